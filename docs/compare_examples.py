"""docs/sweeps.md's examples of `pneumo compare` output, run afresh (or read from a store), never pasted by hand.

    python docs/compare_examples.py seeds [--store DIR]   # 6 toy jobs (~2 min on 2 CPU cores), then compare
    python docs/compare_examples.py importance            # 18 job records, no training (seconds), then compare

`seeds`: `pneumo train -m seed=0,1,2 augmentation=none,light experiment=seeds` with the toy overrides of
tests/helpers.py `TOY`, in a temporary folder, then `pneumo compare --experiment seeds --metric val_auc
--format table`. `importance`: the sweep of tests/test_compare_noise.py `importance_sweep` (the metric rises
0.1 a block; rho and a learning rate drawn per job do nothing; seed SD 0.01), written as job records into a
temporary store, then `pneumo compare --experiment drives --metric val_auc --importance --format table`.
Each output is written, as a code block, between its `results:compare-NAME` markers in docs/sweeps.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "docs"), str(ROOT / "tests")]

import docblocks as blocks  # noqa: E402 -- docs/docblocks.py, beside this file

PAGE = ROOT / "docs" / "sweeps.md"
COMPARE = {"seeds": ["compare", "--experiment", "seeds", "--metric", "val_auc", "--format", "table"],
           "importance": ["compare", "--experiment", "drives", "--metric", "val_auc", "--importance", "--format",
                          "table"]}


def pneumo(args: list[str], folder: Path, store: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PYTHONPATH=str(ROOT), MLFLOW_TRACKING_URI=f"sqlite:///{store}/mlflow.db")
    return subprocess.run([sys.executable, "-m", "pneumo", *args], cwd=folder, env=env, check=True, text=True,
                          capture_output=True).stdout


def seeds(folder: Path) -> Path:
    """The toy sweep, run in `folder`; returns its store."""
    from helpers import TOY  # tests/helpers.py: the real conf/ shrunk, as the tests run it

    pneumo(["train", "-m", "seed=0,1,2", "augmentation=none,light", "experiment=seeds", *TOY,
            f"paths.cache={folder}/cache", f"tracking.store={folder}/mlruns", f"hydra.sweep.dir={folder}/multirun"],
           folder, folder / "mlruns")
    return folder / "mlruns"


def importance(folder: Path) -> Path:
    """tests/test_compare_noise.py's known sweep, as job records in a new store under `folder`."""
    import mlflow
    from test_compare_noise import importance_sweep

    from helpers import empty_store

    importance_sweep(mlflow.MlflowClient(empty_store(folder)), "drives")
    return folder


def output(example: str, folder: Path, store: Path | None = None) -> str:
    """The example's compare output, from `store` or from its sweep run afresh under `folder`."""
    store = store or {"seeds": seeds, "importance": importance}[example](folder)
    return pneumo(COMPARE[example], folder, store.resolve())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("example", choices=sorted(COMPARE))
    p.add_argument("--store", type=Path, help="seeds: read this store (its mlflow.db) instead of running the sweep")
    p.add_argument("--print", action="store_true", help="print the output, write nothing")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix=f"pneumo-{args.example}-") as tmp:
        text = output(args.example, Path(tmp), args.store)
    if not args.print:
        blocks.write(f"compare-{args.example}", f"```\n{text.rstrip()}\n```", PAGE)
    print(text)


if __name__ == "__main__":
    main()
