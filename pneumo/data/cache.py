"""Caches: file hashes by stat, and every distinct file decoded once per (index digest, size).

Per key, cache_dir/decoded/<digest>-<size>px.npy (the images) and .json (their
hashes, and why the bad files failed), each written to a temp file and renamed
into place, so jobs of a sweep racing to fill it never read a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pneumo.data.base import write_atomic
from pneumo.data.imaging import ImageError, decode

_RACY_NS = 3_000_000_000  # 3 s: coarser than any common filesystem's mtime resolution (FAT: 2 s)
_IN_PROCESS_BELOW = 256  # files; starting worker processes costs more than decoding so few


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class HashMemo:
    """sha256 per file, remembered by (size, mtime_ns) as git's index does: a warm load reads no file."""

    def __init__(self, root: Path, cache_dir):
        key = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:24]
        self.path = Path(cache_dir) / "hashes" / f"{key}.json" if cache_dir else None
        try:
            self.known = json.loads(self.path.read_text()) if self.path else {}
        except (OSError, ValueError):
            self.known = {}
        self.seen = {}

    def __call__(self, f: Path, rel: str) -> str:
        st = f.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        old = self.known.get(rel)
        if old and old[:2] == stamp:
            self.seen[rel] = old
            return old[2]
        digest = _sha256(f)
        # A file modified in the last seconds may change again within the filesystem's
        # timestamp resolution without its stamp moving ("racy git"): not remembered.
        racy = time.time_ns() - st.st_mtime_ns < _RACY_NS
        self.seen[rel] = [-1, -1, digest] if racy else [*stamp, digest]
        return digest

    def save(self) -> None:
        if self.path and self.seen != self.known:
            write_atomic(self.path, lambda fh: fh.write(json.dumps(self.seen).encode()))


def cache_path(index, size: int, cache_dir: str | Path) -> Path:
    return Path(cache_dir) / "decoded" / f"{index.digest[:32]}-{size}px.npy"


def _decode_one(job: tuple) -> tuple:
    path, size = job
    try:
        return decode(path, size), None
    except ImageError as e:
        return None, str(e)


def _decode_all(paths: list, size: int, workers: int, progress: bool) -> list:
    jobs = [(p, size) for p in paths]
    bar = dict(total=len(jobs), desc=f"decode {size}px", unit="img", file=sys.stderr,
               disable=not (progress and sys.stderr.isatty()))
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(jobs) < _IN_PROCESS_BELOW:
        return [_decode_one(j) for j in tqdm(jobs, **bar)]
    # spawn, not fork: the caller may hold TensorFlow's threads, which fork can deadlock.
    ctx = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            chunk = max(1, min(64, len(jobs) // (workers * 8)))
            return list(tqdm(pool.map(_decode_one, jobs, chunksize=chunk), **bar))
    except (BrokenProcessPool, OSError) as e:  # e.g. a __main__ that cannot be re-imported (python -)
        print(f"pneumo: parallel decoding failed ({type(e).__name__}); decoding in this process", file=sys.stderr)
        return [_decode_one(j) for j in tqdm(jobs, **bar)]


def decoded(index, size: int, cache_dir: str | Path, workers: int = 0, progress: bool = True):
    """(images (m, size, size) uint8, {hash: row}, {hash: reason it cannot be decoded})."""
    path = cache_path(index, size, cache_dir)
    meta = path.with_suffix(".json")  # written after the .npy: its presence means both are complete
    try:
        info = json.loads(meta.read_text())
        x = np.load(path, allow_pickle=False)
        if len(x) == len(info["hashes"]) and x.shape[1:] == (size, size):
            return x, {h: i for i, h in enumerate(info["hashes"])}, info["bad"]
    except (OSError, ValueError, KeyError):
        pass  # not cached yet, or unreadable (disk full when written): decode
    first = {}
    for e in index.entries:  # identical bytes decode identically: once per hash
        first.setdefault(e.hash, e.path)
    hashes = list(first)
    results = _decode_all([index.root / first[h] for h in hashes], size, workers, progress)
    good = [h for h, (a, _) in zip(hashes, results) if a is not None]
    bad = {h: r for h, (a, r) in zip(hashes, results) if a is None}
    x = np.stack([a for a, _ in results if a is not None]) if good else np.zeros((0, size, size), np.uint8)
    write_atomic(path, lambda f: np.save(f, x))  # .npy, not .npz: read back at disk speed
    write_atomic(meta, lambda f: f.write(json.dumps(dict(hashes=good, bad=bad)).encode()))
    return x, {h: i for i, h in enumerate(good)}, bad
