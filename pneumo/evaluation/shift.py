"""Site shift without labels: does a folder of films look like the films a model was fitted for?

A domain classifier (logistic regression) tries to tell the folder's films from the version's
reference films (a sample of its validation films: the same collection as training, patients
disjoint, and never fitted: the model's embedding of its own training films is tighter than of
any unseen film, so a classifier against training films would call every new folder shifted).
Its inputs: the raw-file image checks (pneumo.evaluation.imagestats) and the top principal
components of the model's embedding. Its cross-validated AUC is the score (0.5: it cannot tell
them apart), with a bootstrap CI over films; then what differs (each image statistic's
standardised difference, the predicted prevalence) and a plain verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pneumo.record import names

MARGIN = 0.05  # shifted when the AUC's lower CI bound clears 0.5 + MARGIN: an effect, not only a detectable one
MIN_FILMS = 10  # readable films a folder needs: 5-fold cross-validation keeps two in each fold
COMPONENTS = 16  # of the embedding, fitted on the reference films
EFFECT = 0.5  # |standardised difference| from which a statistic is named as differing
SAME, SHIFTED = "looks like the training films", "shifted: validate with labelled films before use"
DESCRIBE = {"mean": "exposure (mean intensity)", "std": "contrast (intensity spread)", "saturation": "colour",
            "dark": "share of near-black pixels", "bright": "share of burnt-out pixels",
            "entropy": "histogram entropy", "mediastinum": "mediastinum-lung contrast",
            "rotated": "horizontal band contrast (rotation)", "top_bottom": "bottom-top intensity"}


def _auc(y, s) -> float:
    r = rankdata(s)
    n1, n0 = int(y.sum()), int(len(y) - y.sum())
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def domain_auc(ref: np.ndarray, new: np.ndarray, *, bootstrap: int = 1000, confidence: float = 0.95,
               seed: int = 0) -> tuple[float, float, float]:
    """(cross-validated AUC, CI low, CI high) of a classifier telling `new` rows from `ref` rows."""
    x = np.vstack([ref, new])
    y = np.r_[np.zeros(len(ref), int), np.ones(len(new), int)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    oof = cross_val_predict(clf, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                            method="predict_proba")[:, 1]
    rng, i0, i1 = np.random.default_rng(seed), np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    draws = []
    for _ in range(bootstrap):  # films resampled within each side: the folder's patients are unknown
        pick = np.r_[rng.choice(i0, len(i0)), rng.choice(i1, len(i1))]
        draws.append(_auc(y[pick], oof[pick]))
    alpha = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [alpha, 100 - alpha]) if draws else (np.nan, np.nan)
    return _auc(y, oof), float(low), float(high)


@dataclass(frozen=True)
class Shift:
    """A folder's films against a version's reference films: the domain classifier's AUC and what differs."""

    verdict: str  # SAME or SHIFTED
    differs: tuple[str, ...]  # what differs, the largest first, in words
    reference: int  # reference films
    images: int  # the folder's films
    metrics: dict[str, float]  # SHIFT_AUC and its CI bounds, SHIFT_PREVALENCE, TRAIN_PREVALENCE


def compare(guard, img: np.ndarray, emb: np.ndarray, prob: np.ndarray, *, bootstrap: int = 1000,
            confidence: float = 0.95, seed: int = 0) -> Shift:
    """The shift report of a folder's films (their image features, embeddings, probabilities) against
    the guard's reference sample."""
    img = guard.stats(img)  # the statistics only: the orientation check's layout is no shift measure
    k = int(min(COMPONENTS, guard.ref_emb.shape[1], len(guard.ref_emb) - 1))
    pca = PCA(k, random_state=seed).fit(guard.ref_emb)
    ref = np.hstack([guard.ref_img, pca.transform(guard.ref_emb)])
    new = np.hstack([img, pca.transform(emb)])
    auc, low, high = domain_auc(ref, new, bootstrap=bootstrap, confidence=confidence, seed=seed)
    differs = []
    sd = np.sqrt((guard.ref_img.var(0) + img.var(0)) / 2)
    for j, name in enumerate(str(n) for n in guard.features):
        a, b = float(guard.ref_img[:, j].mean()), float(img[:, j].mean())
        d = (b - a) / sd[j] if sd[j] > 1e-9 else (0.0 if abs(b - a) < 1e-9 else np.inf)
        if abs(d) >= EFFECT or name in ("mean", "std"):  # exposure and contrast: always shown
            differs.append((abs(d), f"{DESCRIBE.get(name, name)}: {a:.3f} in the training collection, {b:.3f} here "
                                    f"(standardised difference {d:+.1f})"))
    prev_ref = float((guard.ref_prob >= guard.prob_threshold).mean())
    prev_new = float((prob >= guard.prob_threshold).mean())
    lines = [text for _, text in sorted(differs, reverse=True)]
    if not any(abs(d) >= EFFECT for d, _ in differs) and low > 0.5 + MARGIN:
        lines.append("no image statistic differs much: the difference is in the model's own features (embedding)")
    lines.append(f"predicted PNEUMONIA: {prev_ref:.1%} of the training collection, {prev_new:.1%} here")
    low_, high_ = names.ci_names(names.SHIFT_AUC)
    return Shift(SHIFTED if low > 0.5 + MARGIN else SAME, tuple(lines), len(ref), len(new),
                 {names.SHIFT_AUC: auc, low_: low, high_: high, names.SHIFT_PREVALENCE: prev_new,
                  names.TRAIN_PREVALENCE: prev_ref})
