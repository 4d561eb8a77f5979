"""Sensitivity per pneumonia subtype (Kermany's bacteria / virus), with patient-bootstrap CIs.

Pooled sensitivity hides the harder subtype: viral pneumonia is the rarer and the subtler one.
Each subtype's sensitivity is the share of that subtype's PNEUMONIA films called PNEUMONIA, with
the CI from the same patient-level bootstrap as every other test metric (pneumo.evaluation.stats,
on that subtype's films alone). Specificity has no subtype: it stays the NORMAL films'.
"""

from __future__ import annotations

import numpy as np

from pneumo.data.subtypes import SUBTYPES, subtype
from pneumo.evaluation import stats
from pneumo.record import names

MIN_FILMS = 1  # a subtype with fewer PNEUMONIA films is not reported


def subtype_counts(y, paths) -> tuple[tuple[str, int], ...]:
    """(subtype, PNEUMONIA films) for each subtype named in `paths` (subtypes absent from the names are left out)."""
    kinds = [subtype(p) for p, label in zip(paths, np.asarray(y).astype(int)) if label == 1]
    return tuple((s, kinds.count(s)) for s in SUBTYPES if kinds.count(s) >= MIN_FILMS)


def subtype_metrics(y, p, patients, paths, threshold, *, bootstrap: int = 1000, confidence: float = 0.95,
                    seed: int = 0) -> dict[str, float]:
    """{test_sensitivity_<subtype>: value, and its _ci_low / _ci_high} for each subtype the names carry;
    {} when none does (a folder without Kermany names)."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    patients = np.asarray(patients)
    kinds = np.array([subtype(x) or "" for x in paths])
    out = {}
    for kind, _ in subtype_counts(y, paths):
        keep = (y == 1) & (kinds == kind)
        if bootstrap:
            res = stats.evaluate(y[keep], p[keep], patients[keep], threshold, bootstrap=bootstrap,
                                 confidence=confidence, seed=seed)
        else:
            res = stats.score(y[keep], p[keep], threshold)
        for metric in names.SUBTYPE_METRICS:
            out[names.subtype_metric(metric, kind)] = res[metric]
            if bootstrap:
                for bound, name in zip(names.ci_names(metric), names.ci_names(names.subtype_metric(metric, kind))):
                    out[name] = res[bound]
    return out

