"""The out-of-distribution guard: how far a film lies from the training films, as one score.

Two distances, each a Mahalanobis distance with a Ledoit-Wolf shrinkage covariance (sklearn)
fitted on TRAINING films only:
- the cheap image checks (pneumo.evaluation.imagestats) of the raw file, each first scaled by the
  training films' median and MAD (floored: a feature that never varies in training, such as the
  colour of gray films, still gets a finite scale, so colour reads as far, not as infinitely far);
- the model's own penultimate-layer embedding (pneumo.model.embedding).
Each is divided by its median on the VALIDATION films, the larger of the two is the raw score,
and the threshold is its `quantile` (0.99) on the validation films: raw / threshold is 1.0 at the
line, and ~1% of validation films are beyond it. Then the orientation check
(pneumo.evaluation.orientation: upside down, mirrored), whose ratios are 1.0 at lines that hold
another ~1% of validation films. `ood` is the largest of the three: above 1.0, flagged. Arrays
only, saved as .npz (no pickle); statistics saved before the orientation check (FORMAT 1) load
and score without it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy.stats import norm
from sklearn.covariance import LedoitWolf

from pneumo.evaluation import imagestats, orientation

SCALE_FLOOR = 0.02  # feature units (shares, [0, 1] intensities): below this a spread is measurement noise
FORMAT = 2  # of the saved statistics; 1: before the orientation check
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
    orient_w: np.ndarray | None = None  # orientation ratios = layout @ orient_w.T + orient_b; None: format 1
    orient_b: np.ndarray | None = None

    def distances(self, img: np.ndarray, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(image distance, embedding distance) per film, each in units of its validation median."""
        z = (self.stats(img) - self.img_center) / self.img_scale - self.img_mean
        e = np.asarray(emb, float) - self.emb_mean
        d_img = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", z, self.img_prec, z), 0))
        d_emb = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", e, self.emb_prec, e), 0))
        return d_img / self.img_median, d_emb / self.emb_median

    def stats(self, img: np.ndarray) -> np.ndarray:
        """The image statistics of imagestats rows: the columns this guard was fitted on, which come first."""
        return np.asarray(img, float)[:, :len(self.img_center)]

    def turned(self, img: np.ndarray) -> np.ndarray:
        """(films, orientation.CHECKS) ratios, 1.0 at each line; no columns for a guard saved without them."""
        if self.orient_w is None:
            return np.zeros((len(img), 0))
        return orientation.ratios(imagestats.split(img)[1], self.orient_w, self.orient_b)

    def score(self, img: np.ndarray, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ood score, flag) per film: flag where the score is above 1."""
        a, b = self.distances(img, emb)
        ood = np.max(np.column_stack([np.maximum(a, b) / self.threshold, self.turned(img)]), axis=1)
        return ood, ood > 1.0

    def save(self, path) -> None:
        np.savez(path, format=FORMAT, **{k: np.asarray(v) for k, v in asdict(self).items() if v is not None})

    @classmethod
    def load(cls, path) -> "Guard":
        with np.load(path, allow_pickle=False) as z:
            if int(z["format"]) > FORMAT:
                raise ValueError(f"{path}: out-of-distribution statistics of format {int(z['format'])}, saved by a "
                                 f"newer pneumo (this one reads up to {FORMAT}): upgrade pneumo to load this model")
            kw = {f.name: z[f.name] for f in fields(cls) if f.name in z.files}
        for name in ("img_median", "emb_median", "threshold", "quantile", "prob_threshold"):
            kw[name] = float(kw[name])
        return cls(**kw)


def _scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    center = np.median(x, axis=0)
    mad = 1.4826 * np.median(np.abs(x - center), axis=0)
    return center, np.maximum(mad, SCALE_FLOOR)


def _gaussian(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lw = LedoitWolf().fit(x)
    return lw.location_, lw.precision_


def threshold(raw: np.ndarray, quantile: float) -> float:
    """The `quantile` of validation scores: the empirical one, or a log-normal fitted to them when that is
    higher. With few validation films (a toy run's 7) the empirical 99th percentile is merely the largest
    score and flags a fifth of new films from the same collection; the fitted tail extrapolates instead.
    With hundreds of films the two agree and the empirical one holds ~1% flagged."""
    logs = np.log(np.maximum(raw, 1e-12))
    fitted = float(np.exp(logs.mean() + norm.ppf(quantile) * logs.std(ddof=1))) if len(raw) > 2 else 0.0
    return float(max(np.quantile(raw, quantile), fitted, 1e-12))


def fit(train_img, train_emb, val_img, val_emb, val_prob, *, prob_threshold: float, quantile: float = 0.99,
        reference: int = 2000, seed: int = 0, names=()) -> Guard:
    """The guard from training films' imagestats rows and embeddings; its scales, threshold and orientation
    lines from validation's."""
    if min(len(train_img), len(val_img)) < MIN_FILMS:
        raise ValueError(f"{len(train_img)} training and {len(val_img)} validation films: the guard needs at least "
                         f"{MIN_FILMS} of each")
    (train_img, train_layout), (val_img, val_layout) = imagestats.split(train_img), imagestats.split(val_img)
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
    g.orient_w, g.orient_b = orientation.fit(train_layout, val_layout, quantile)
    if len(val_img) > reference:  # the shift check's reference sample stays small
        keep = np.sort(np.random.default_rng(seed).choice(len(val_img), reference, replace=False))
        g.ref_img, g.ref_emb, g.ref_prob = val_img[keep], val_emb[keep], g.ref_prob[keep]
    return g
