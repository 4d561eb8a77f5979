"""Decode cache: every distinct file decoded once per (index digest, size), kept on disk.

Per key, cache_dir/decoded/<digest>-<size>px.npy (the images) and .json (their
hashes, and why the bad files failed), each written to a temp file and renamed
into place, so jobs of a sweep racing to fill it never read a half-written file.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pneumo.data.index import Index
from pneumo.imaging import ImageError, decode

_IN_PROCESS_BELOW = 256  # files; starting worker processes costs more than decoding so few


def write_atomic(path: Path, write) -> None:
    """write(binary file) into a temp file beside path, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cache_path(index: Index, size: int, cache_dir: str | Path) -> Path:
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


def decoded(index: Index, size: int, cache_dir: str | Path, workers: int = 0, progress: bool = True):
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
