"""Test-set evaluation: threshold choice, metrics, patient-level bootstrap CIs, plots.

Point estimates come from scikit-learn. The bootstrap resamples *patients*
(up to 30 images share one in Kermany's set), so it computes the same metrics
from per-patient counts weighted by how often each patient was drawn: one
matrix product per resample block instead of a scikit-learn call per resample.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn import metrics as skm

from pneumo.record import names
from pneumo.record.names import TEST_METRICS, THRESHOLD, ci_names, higher_is_better

THRESHOLD_POLICIES = ("youden", "sensitivity")
_BLOCK = 250  # resamples per vectorised block: bounds memory at _BLOCK x distinct scores


def choose_threshold(y_val, p_val, policy: str = "youden", target_sensitivity: float = 0.95) -> float:
    """Decision threshold on validation predictions (never on test)."""
    if policy not in THRESHOLD_POLICIES:
        raise ValueError(f"evaluation.threshold={policy!r}; allowed: {', '.join(THRESHOLD_POLICIES)}")
    y_val, p_val = np.asarray(y_val).astype(int), np.asarray(p_val, dtype=float)
    if len(np.unique(y_val)) < 2:
        warnings.warn("validation split holds one class only; threshold falls back to 0.5", stacklevel=2)
        return 0.5
    fpr, tpr, thr = skm.roc_curve(y_val, p_val, drop_intermediate=False)
    thr = np.clip(thr, 0.0, 1.0)  # the first threshold is +inf: "predict nothing positive"
    if policy == "youden":
        return float(thr[np.argmax(tpr - fpr)])
    # thresholds fall as tpr rises: the first one reaching the target is the highest
    return float(thr[np.argmax(tpr >= target_sensitivity)])


def auc(y, p) -> float:
    """ROC AUC, or nan when y holds one class only."""
    y = np.asarray(y).astype(int)
    return float(skm.roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def auc_standard_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUC from n_pos positives and n_neg negatives."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return float(np.sqrt(max(var, 0.0)))


def _ratio(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def score(y, p, threshold) -> dict[str, float]:
    """Every metric in TEST_METRICS; undefined ones (e.g. no predicted positives) are nan."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    both = len(np.unique(y)) == 2
    out = {
        names.TEST_AUC: skm.roc_auc_score(y, p) if both else np.nan,
        names.TEST_AUPRC: skm.average_precision_score(y, p) if y.any() else np.nan,
        names.TEST_ACCURACY: skm.accuracy_score(y, pred),
        names.TEST_SENSITIVITY: skm.recall_score(y, pred, zero_division=np.nan),
        names.TEST_SPECIFICITY: _ratio(tn, tn + fp),
        names.TEST_PRECISION: skm.precision_score(y, pred, zero_division=np.nan),
        names.TEST_NPV: _ratio(tn, tn + fn),
        names.TEST_F1: skm.f1_score(y, pred, zero_division=np.nan),
        names.TEST_BRIER: skm.brier_score_loss(y, p) if len(y) else np.nan,
    }
    return {k: float(v) for k, v in out.items()}


class _Resampler:
    """Metrics of many patient resamples at once, from per-patient sufficient statistics."""

    def __init__(self, y, p, patients, threshold):
        y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
        _, pat = np.unique(np.asarray(patients), return_inverse=True)
        values, u = np.unique(p, return_inverse=True)  # ascending distinct scores (ties share one)
        self.n_patients = int(pat.max()) + 1 if len(pat) else 0
        shape = (self.n_patients, len(values))
        # positives / negatives of each patient at each distinct score
        self.pos = sparse.csr_matrix((y.astype(float), (pat, u)), shape=shape)
        self.neg = sparse.csr_matrix(((1 - y).astype(float), (pat, u)), shape=shape)
        pred = p >= threshold
        cols = np.stack([y & pred, (1 - y) & pred, y & ~pred, (1 - y) & ~pred, (p - y) ** 2], axis=1)
        self.stats = np.zeros((self.n_patients, 5))
        np.add.at(self.stats, pat, cols)

    def draw(self, n: int, rng) -> np.ndarray:
        """n x patients: how often each patient is drawn (with replacement) per resample."""
        return rng.multinomial(self.n_patients, np.full(self.n_patients, 1.0 / self.n_patients), size=n)

    def metrics(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        counts = counts.astype(float)
        tp, fp, fn, tn, sq = (counts @ self.stats).T
        pos = (self.pos.T @ counts.T).T  # resamples x distinct scores
        neg = (self.neg.T @ counts.T).T
        n_pos, n_neg = pos.sum(1), neg.sum(1)
        below = np.cumsum(neg, axis=1) - neg  # negatives scored strictly lower; ties count half
        auc = _ratio(np.sum(pos * (below + 0.5 * neg), axis=1), n_pos * n_neg)
        tp_at, all_at = np.cumsum(pos[:, ::-1], 1), np.cumsum((pos + neg)[:, ::-1], 1)
        prec_at = np.nan_to_num(_ratio(tp_at, all_at))  # zero where no image sits at or above
        auprc = _ratio(np.sum(pos[:, ::-1] * prec_at, axis=1), n_pos)
        n = n_pos + n_neg
        return {
            names.TEST_AUC: auc,
            names.TEST_AUPRC: auprc,
            names.TEST_ACCURACY: _ratio(tp + tn, n),
            names.TEST_SENSITIVITY: _ratio(tp, tp + fn),
            names.TEST_SPECIFICITY: _ratio(tn, tn + fp),
            names.TEST_PRECISION: _ratio(tp, tp + fp),
            names.TEST_NPV: _ratio(tn, tn + fn),
            names.TEST_F1: _ratio(2 * tp, 2 * tp + fp + fn),
            names.TEST_BRIER: _ratio(sq, n),
        }


def _blocks(n: int):
    for start in range(0, n, _BLOCK):
        yield min(_BLOCK, n - start)


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not len(values):
        return np.nan, np.nan
    alpha = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [alpha, 100 - alpha])
    return float(low), float(high)


def evaluate(y, p, patients, threshold, *, bootstrap=1000, confidence=0.95, seed=0) -> dict[str, float]:
    """score() plus a percentile CI per metric from `bootstrap` patient-level resamples."""
    out = score(y, p, threshold)
    rs, rng = _Resampler(y, p, patients, threshold), np.random.default_rng(seed)
    draws = [rs.metrics(rs.draw(b, rng)) for b in _blocks(bootstrap)]
    for name in TEST_METRICS:
        values = np.concatenate([d[name] for d in draws]) if draws else np.array([])
        low, high = ci_names(name)
        out[low], out[high] = _interval(values, confidence)
    out[THRESHOLD] = float(threshold)
    return out


@dataclass(frozen=True)
class Paired:
    """metric(b) - metric(a) on the same images, with its patient-bootstrap interval."""

    metric: str
    delta: float
    ci_low: float
    ci_high: float
    p_value: float  # one-sided: the share of resamples where b is no better than a
    n: int  # resamples with a finite difference
    confidence: float


def paired_bootstrap(y, p_a, p_b, patients, metric: str, thr_a, thr_b, *, n=2000, confidence=0.95, seed=0) -> Paired:
    """metric(b) - metric(a) on the same images, both scored on the same patient resamples.

    p_value is the one-sided share of resamples where b is no better than a.
    """
    if metric not in TEST_METRICS:
        raise ValueError(f"paired test needs a test metric, one of: {', '.join(TEST_METRICS)}")
    a, b = _Resampler(y, p_a, patients, thr_a), _Resampler(y, p_b, patients, thr_b)
    rng, deltas = np.random.default_rng(seed), []
    for size in _blocks(n):
        counts = a.draw(size, rng)
        deltas.append(b.metrics(counts)[metric] - a.metrics(counts)[metric])
    deltas = np.concatenate(deltas) if deltas else np.array([])
    finite = deltas[np.isfinite(deltas)]
    worse = finite <= 0 if higher_is_better(metric) else finite >= 0
    low, high = _interval(deltas, confidence)
    return Paired(metric, score(y, p_b, thr_b)[metric] - score(y, p_a, thr_a)[metric], low, high,
                  float(worse.mean()) if len(finite) else np.nan, int(len(finite)), confidence)
