"""load(): source -> index -> decode cache -> patient-disjoint splits, checked for leakage."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from omegaconf.errors import MissingMandatoryValue

from pneumo.data import kaggle, synthetic
from pneumo.data.base import CLASSES, DataError, Splits, Subset, write_atomic
from pneumo.data.cache import decoded
from pneumo.data.index import Index, find_root, scan, with_test_set
from pneumo.data.splits import assign, check_leakage, subsample

SPLIT_VERSION = 1  # bump when the split algorithm changes: it is part of the digest


def _root(cfg):
    try:
        return cfg.root
    except MissingMandatoryValue:  # `root: ???` in conf/data/folder.yaml, not overridden
        return None


def _synthetic(cfg, progress: bool) -> Path:
    args = (cfg.n_images, cfg.image_px, cfg.normal_fraction, cfg.seed)
    return synthetic.generate(_root(cfg) or synthetic.default_root(cfg.cache_dir, *args), *args)


def _folder(cfg, progress: bool) -> Path:
    if not _root(cfg):
        raise DataError("data.root is not set: pass data.root=<folder with train/NORMAL/ and train/PNEUMONIA/>")
    return find_root(_root(cfg))


def _kaggle(cfg, progress: bool) -> Path:
    return kaggle.ensure(_root(cfg), cfg.dataset, progress)


SOURCES = {"synthetic": _synthetic, "folder": _folder, "kaggle": _kaggle}


def resolve_root(cfg, progress: bool = True) -> Path:
    """The Kaggle-layout root of cfg's source, generated or downloaded first if needed."""
    try:
        source = SOURCES[cfg.source]
    except KeyError:
        raise DataError(f"unknown data source {cfg.source!r}: use one of {', '.join(SOURCES)}") from None
    return source(cfg, progress)


def index(cfg, progress: bool = True) -> Index:
    """The source's index; with data.test_root, that folder is the test split."""
    idx = scan(resolve_root(cfg, progress), cfg.cache_dir)
    return with_test_set(idx, cfg.test_root, cfg.cache_dir) if cfg.test_root else idx


def load(cfg, image_size: int, progress: bool = True) -> Splits:
    return from_index(index(cfg, progress), cfg, image_size, progress)


def _subset(entries, groups, positions, x, row, size: int) -> Subset:
    pick = [entries[i] for i in positions]
    images = x[[row[e.hash] for e in pick]] if pick else np.zeros((0, size, size), np.uint8)
    return Subset(
        x=images[..., None],
        y=np.array([e.label for e in pick], dtype=np.int64),
        patients=np.array([groups[i] for i in positions], dtype=str),
        hashes=np.array([e.hash for e in pick], dtype=str),
        paths=np.array([e.path for e in pick], dtype=str),
    )


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def labels_digest(hashes, y) -> str:
    """Identity of a labelled image set: its files' bytes and labels, in no particular order."""
    return _digest(sorted(zip(np.asarray(hashes).tolist(), np.asarray(y).tolist())))


def _cached_split(usable, params: dict, path: Path):
    """assign(), remembered by path: the group-aware splitter takes seconds on Kermany's 5,216 films."""
    pos = {e.path: i for i, e in enumerate(usable)}
    try:
        saved = json.loads(path.read_text())
        parts = {s: [pos[p] for p in paths] for s, paths in saved["parts"].items()}
        return parts, [saved["groups"][e.path] for e in usable], [tuple(d) for d in saved["dropped"]]
    except (OSError, ValueError, KeyError):
        pass  # not cached yet (or unreadable): compute
    parts, groups, dropped = assign(usable, **params)
    saved = dict(parts={s: [usable[i].path for i in v] for s, v in parts.items()},
                 groups={e.path: g for e, g in zip(usable, groups)}, dropped=dropped)
    write_atomic(path, lambda f: f.write(json.dumps(saved).encode()))
    return parts, groups, dropped


def from_index(index: Index, cfg, image_size: int, progress: bool = True) -> Splits:
    x, row, bad = decoded(index, image_size, cfg.cache_dir, cfg.workers, progress)
    usable = [e for e in index.entries if e.hash in row]
    skipped = list(index.skipped) + [(e.path, bad[e.hash]) for e in index.entries if e.hash in bad]
    for split in index.splits():
        for label in range(len(CLASSES)):
            if not any(e.split == split and e.label == label for e in usable):
                folder = next(Path(index.root / e.path).parent for e in index.entries
                              if e.split == split and e.label == label)
                raise DataError(f"{os.path.normpath(folder)} has no readable images: see the skipped files "
                                f"with `pneumo data inspect {index.root}`")
    params = dict(seed=cfg.seed, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                  fold_kaggle_val=cfg.fold_kaggle_val)
    digest = _digest(index.digest, params, SPLIT_VERSION)
    parts, groups, dropped = _cached_split(usable, params, Path(cfg.cache_dir) / "splits" / f"{digest[:32]}.json")
    if cfg.train_fraction < 1:  # a cheaper fidelity: fewer training patients, the same val and test
        parts["train"] = subsample([usable[i].label for i in parts["train"]], [groups[i] for i in parts["train"]],
                                   parts["train"], cfg.train_fraction, cfg.seed)
        digest = _digest(digest, {"train_fraction": cfg.train_fraction})  # 1.0 keeps the digest it always had
    subsets = {name: _subset(usable, groups, pos, x, row, image_size) for name, pos in parts.items()}
    check_leakage(subsets, {name: [usable[i].patient for i in pos] for name, pos in parts.items()})
    test = subsets["test"]
    return Splits(
        **subsets,
        digest=digest,
        test_digest=labels_digest(test.hashes, test.y),
        image_size=image_size,
        root=str(index.root),
        skipped=tuple(skipped + dropped),
        test_source=str(index.test_root or (index.root / "test" if "test" in index.splits() else "carved from train")),
    )
