"""The out-of-distribution guard: how far a film lies from the training films, as one score.

Two distances, each a Mahalanobis distance with a Ledoit-Wolf shrinkage covariance (sklearn)
fitted on TRAINING films only:
- the cheap image checks (pneumo.evaluation.imagestats) of the raw file, each first scaled by the
  training films' median and MAD (floored: a feature that never varies in training, such as the
  colour of gray films, still gets a finite scale, so colour reads as far, not as infinitely far);
- the model's own penultimate-layer embedding (pneumo.model.embedding).
Each is divided by its median on the VALIDATION films, the larger of the two is the raw score,
and the threshold is its `quantile` (0.99) on the validation films: `ood` = raw / threshold, so
1.0 is the line and ~1% of validation films are flagged. Arrays only, saved as .npz (no pickle).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

SCALE_FLOOR = 0.02  # feature units (shares, [0, 1] intensities): below this a spread is measurement noise
FORMAT = 1  # of the saved statistics
MIN_FILMS = 2  # training and validation films each: one training film has no spread (every distance 0: nothing flagged)


@dataclass
class Guard:
    img_center: np.ndarray  # per image feature: training median
    img_scale: np.ndarray  # training MAD (x1.4826), floored
    img_mean: np.ndarray  # of the scaled features, training
    img_prec: np.ndarray  # Ledoit-Wolf precision of the scaled features, training
    emb_mean: np.ndarray  # of the embedding, training
    emb_prec: np.ndarray  # Ledoit-Wolf precision of the embedding, training
    img_median: float  # median image distance of the validation films
    emb_median: float  # median embedding distance of the validation films
    threshold: float  # `quantile` of the validation films' raw scores
    quantile: float
    ref_img: np.ndarray  # reference sample for `pneumo shift`: validation films' image features
    ref_emb: np.ndarray  # their embeddings
    ref_prob: np.ndarray  # their probabilities
    prob_threshold: float  # the model's decision threshold (predicted prevalence)
    features: np.ndarray  # the image features' names (str)

    def distances(self, img: np.ndarray, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(image distance, embedding distance) per film, each in units of its validation median."""
        z = (np.asarray(img, float) - self.img_center) / self.img_scale - self.img_mean
        e = np.asarray(emb, float) - self.emb_mean
        d_img = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", z, self.img_prec, z), 0))
        d_emb = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", e, self.emb_prec, e), 0))
        return d_img / self.img_median, d_emb / self.emb_median

    def score(self, img: np.ndarray, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ood score, flag) per film: flag where the score is above 1."""
        a, b = self.distances(img, emb)
        ood = np.maximum(a, b) / self.threshold
        return ood, ood > 1.0

    def save(self, path) -> None:
        np.savez(path, format=FORMAT, **{k: np.asarray(v) for k, v in asdict(self).items()})

    @classmethod
    def load(cls, path) -> "Guard":
        with np.load(path, allow_pickle=False) as z:
            kw = {f.name: z[f.name] for f in fields(cls)}
        for name in ("img_median", "emb_median", "threshold", "quantile", "prob_threshold"):
            kw[name] = float(kw[name])
        return cls(**kw)


def _scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    center = np.median(x, axis=0)
    mad = 1.4826 * np.median(np.abs(x - center), axis=0)
    return center, np.maximum(mad, SCALE_FLOOR)


def _gaussian(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf().fit(x)
    return lw.location_, lw.precision_


def threshold(raw: np.ndarray, quantile: float) -> float:
    """The `quantile` of validation scores: the empirical one, or a log-normal fitted to them when that is
    higher. With few validation films (a toy run's 7) the empirical 99th percentile is merely the largest
    score and flags a fifth of new films from the same collection; the fitted tail extrapolates instead.
    With hundreds of films the two agree and the empirical one holds ~1% flagged."""
    from scipy.stats import norm

    logs = np.log(np.maximum(raw, 1e-12))
    fitted = float(np.exp(logs.mean() + norm.ppf(quantile) * logs.std(ddof=1))) if len(raw) > 2 else 0.0
    return float(max(np.quantile(raw, quantile), fitted, 1e-12))


def fit(train_img, train_emb, val_img, val_emb, val_prob, *, prob_threshold: float, quantile: float = 0.99,
        reference: int = 2000, seed: int = 0, names=()) -> Guard:
    """The guard from training films' features and embeddings; its scale and threshold from validation's."""
    if min(len(train_img), len(val_img)) < MIN_FILMS:
        raise ValueError(f"{len(train_img)} training and {len(val_img)} validation films: the guard needs at least "
                         f"{MIN_FILMS} of each")
    train_img, val_img = np.asarray(train_img, float), np.asarray(val_img, float)
    train_emb, val_emb = np.asarray(train_emb, float), np.asarray(val_emb, float)
    center, scale = _scale(train_img)
    img_mean, img_prec = _gaussian((train_img - center) / scale)
    emb_mean, emb_prec = _gaussian(train_emb)
    g = Guard(center, scale, img_mean, img_prec, emb_mean, emb_prec, 1.0, 1.0, 1.0, float(quantile),
              val_img, val_emb, np.asarray(val_prob, float), float(prob_threshold), np.array(list(names), dtype=str))
    a, b = g.distances(val_img, val_emb)
    g.img_median, g.emb_median = float(max(np.median(a), 1e-12)), float(max(np.median(b), 1e-12))
    raw = np.maximum(a / g.img_median, b / g.emb_median)
    g.threshold = threshold(raw, quantile)
    if len(val_img) > reference:  # the shift check's reference sample stays small
        keep = np.sort(np.random.default_rng(seed).choice(len(val_img), reference, replace=False))
        g.ref_img, g.ref_emb, g.ref_prob = val_img[keep], val_emb[keep], g.ref_prob[keep]
    return g
