"""What measuring the films costs a job's out-of-distribution guard, and what the per-process memo saves.

    python benchmarks/guard.py [--root ../shared/data/kermany-224/train] [--films 2500] [--repeats 3]

Each job of a sweep fits a guard (pneumo.evaluation.ood_fit), which measures the image features of up to
evaluation.ood_sample (2,000) training films and of every validation and test film from their raw files.
The jobs of one sweep run in one process (Hydra's basic launcher) and measure the same files, so the
features are remembered by (path, mtime, size). Timed here, alternating: `cold` (memo cleared: what every
job paid before, and what the first job of a sweep pays) and `warm` (what each later job pays). Prints the
seconds of each and their ratio. The films are the first --films files under --root, sorted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pneumo.evaluation import ood_fit  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "data" / "kermany-224" / "train")
    p.add_argument("--films", type=int, default=2500)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    files = sorted(f.relative_to(args.root) for f in args.root.rglob("*") if f.suffix.lower() in {".png", ".jpeg", ".jpg"})
    if not files:
        raise SystemExit(f"no films under {args.root}: pass --root")
    files = files[: args.films]
    subset = SimpleNamespace(paths=np.array([str(f) for f in files]), x=np.zeros((len(files), 8, 8, 1), np.uint8))
    idx = np.arange(len(files))
    times = {"cold": [], "warm": []}
    for _ in range(args.repeats):
        for kind in ("cold", "warm"):
            if kind == "cold":
                ood_fit._file_features.cache_clear()
            t = time.perf_counter()
            feats, ok = ood_fit._features(args.root, subset, idx)
            times[kind].append(time.perf_counter() - t)
    print(f"{len(files)} films under {args.root} ({len(ok)} measured), {args.repeats} repeats, median:")
    cold, warm = (statistics.median(times[k]) for k in ("cold", "warm"))
    print(f"| memo | s per job | films/s |\n|---|---:|---:|\n| cold (cleared) | {cold:.2f} | {len(files) / cold:.0f} |\n"
          f"| warm | {warm:.3f} | {len(files) / warm:.0f} |")
    print(f"cold / warm: {cold / warm:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
