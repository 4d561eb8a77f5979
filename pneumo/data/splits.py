"""Patient-disjoint, stratified train/val/test splits, and the leakage check.

A group is a patient, merged with every patient that shares a file's exact bytes
with it (union-find over patient keys and sha256). Groups never straddle splits.
"""

from __future__ import annotations

import warnings

import numpy as np

from pneumo.data.base import DataError, LeakageError

# Where a group found in several source folders is kept: the source test/ stays as
# published (its identity is what promotion compares), so train/val copies are dropped.
_PRIORITY = {"train": 0, "val": 1, "test": 2}


def group_keys(patients: list, hashes: list) -> list:
    """Per entry: the smallest patient key of its group (patients joined by identical bytes)."""
    parent = {}

    def find(a):
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for p, h in zip(patients, hashes):
        ra, rb = find("p:" + p), find("h:" + h)
        if ra != rb:
            parent[rb] = ra
    label = {}
    for p in patients:
        root = find("p:" + p)
        label[root] = min(label.get(root, p), p)
    return [label[find("p:" + p)] for p in patients]


def _group_folds(n_splits: int, seed: int):
    """scikit-learn's StratifiedGroupKFold, imported when a split is made: this module is loaded by every
    `pneumo` command, `--help` too, and the import takes 1-2 s (pneumo/__init__.py lists such imports)."""
    from sklearn.model_selection import StratifiedGroupKFold

    return StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)


def _carve(y: np.ndarray, groups: np.ndarray, fraction: float, seed: int, what: str):
    """(rest, carved) positions: about `fraction` of the groups, stratified by label."""
    if fraction <= 0:
        return np.arange(len(y)), np.arange(0)
    if fraction >= 0.5:
        raise DataError(f"{what} fraction {fraction} is too large: use a value below 0.5")
    n_splits = max(2, round(1 / fraction))  # one fold is carved: fraction ~ 1/n_splits
    if len(set(groups)) < n_splits:
        raise DataError(f"only {len(set(groups))} patients: too few to carve a {what} split of {fraction}")
    with warnings.catch_warnings():  # "least populated class < n_splits": handled just below
        warnings.simplefilter("ignore", UserWarning)
        folds = list(_group_folds(n_splits, seed).split(np.zeros(len(y)), y, groups))
    # On small sets a fold can miss a class (val AUC is then undefined): take the first that has both.
    both = [f for f in folds if len(set(y[f[1]])) == len(set(y[f[0]])) == len(set(y))]
    return (both or folds)[0]


def assign(entries, *, seed: int, val_fraction: float, test_fraction: float, fold_kaggle_val: bool):
    """({split: sorted positions}, group key per entry, [(path, reason) dropped to avoid leakage])."""
    groups = group_keys([e.patient for e in entries], [e.hash for e in entries])
    pool = ["train" if e.split == "val" and fold_kaggle_val else e.split for e in entries]
    home = {}
    for g, p in zip(groups, pool):
        if _PRIORITY[p] > _PRIORITY[home.get(g, "train")]:
            home[g] = p
    dropped, keep = [], []
    for i, (e, g, p) in enumerate(zip(entries, groups, pool)):
        if home.get(g, "train") != p:
            dropped.append((e.path, f"same patient or identical bytes as an image in {home[g]}/: kept out of {p}"))
        else:
            keep.append(i)
    out = {s: [i for i in keep if pool[i] == s] for s in ("train", "val", "test")}
    carved_test = False
    for name in ("test", "val"):
        if out[name]:
            continue  # the source has this split
        # Fractions are of the whole pool: val is carved after test, from what test left.
        fraction = test_fraction if name == "test" else val_fraction / (1 - test_fraction * carved_test)
        rest = np.array(out["train"])
        y = np.array([entries[i].label for i in rest])
        g = np.array([groups[i] for i in rest])
        kept, carved = _carve(y, g, fraction, seed, name)
        out["train"], out[name] = rest[kept].tolist(), rest[carved].tolist()
        carved_test = name == "test"
    return {s: sorted(v) for s, v in out.items()}, groups, dropped


def subsample(y: list, groups: list, positions: list, fraction: float, seed: int) -> list:
    """About `fraction` of the patient groups behind `positions`, stratified by label, whole groups only."""
    n_splits = max(2, round(1 / min(fraction, 1 - fraction)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        folds = _group_folds(n_splits, seed).split(np.zeros(len(y)), y, groups)
        rest, one = next(folds)
    kept = one if fraction <= 0.5 else rest  # one fold is ~1/n_splits of the groups
    return sorted(np.asarray(positions)[kept].tolist())


def check_leakage(subsets: dict, patients: dict | None = None) -> None:
    """Raise LeakageError if a group, a file's bytes or (given {split: keys}) a patient is in two splits."""
    checks = [("patient group", {n: s.patients for n, s in subsets.items()}),
              ("file sha256", {n: s.hashes for n, s in subsets.items()})]
    checks += [("patient", patients)] if patients else []
    problems = []
    for what, keys in checks:
        where = {}
        for name, values in keys.items():
            for v in np.unique(np.asarray(values, dtype=str)):
                if v in where:
                    problems.append(f"{what} {v} in {where[v]} and {name}")
                where.setdefault(v, name)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise LeakageError(f"leakage between splits: {'; '.join(problems[:3])}{more}")
