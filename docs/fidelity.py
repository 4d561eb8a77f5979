"""docs/fidelity.md's tables, from the store of `pneumo sweep kermany-fidelity` (not typed by hand).

    .venv/bin/python docs/fidelity.py --store STORE [--experiment kermany-fidelity] [--full trainer.image_size=128 ...]
                                      [--also STORE EXPERIMENT ...] [--write]

Each job is one (lever, seed, fidelity) of the study: its lever and fidelity are read from its overrides
(`lever=`, `seed=`, and every other override: `trainer.image_size=32`, `data.train_fraction=0.5`, ...).
For each fidelity: the cost of a job (median wall time), and how well its ranking of the levers agrees
with the full fidelity's: Spearman's rho between the levers' seed means, on validation AUC and on the
shifted validation AUC (the external set is reported, never used to choose). The interval is a bootstrap
over seeds: each (lever, fidelity) cell's seeds are resampled with replacement, so the interval is the
seed noise of both rankings. An "itself" row splits a full fidelity's own seeds in two: the agreement
that seed noise alone allows, the ceiling a cheap fidelity is judged against. `--also` adds the jobs of
another store's experiment (the 128 px confirmations of docs/screen.md are 128 px jobs of the same sweep):
a lever is compared wherever both fidelities have it.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import study

from pneumo.record import names

RANKED = {"validation AUC": names.MODEL_VAL_AUC, "shifted validation AUC": names.MODEL_VAL_AUC_SHIFTED}
REPORTED = (names.TEST_AUC, names.TEST_ACCURACY, names.TEST_SENSITIVITY, names.TEST_SPECIFICITY)
RESAMPLES, SEED = 2000, 0
PAGE = study.ROOT / "docs" / "fidelity.md"


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def cells(rows: list[study.Job], metric: str) -> dict[tuple[str, str], np.ndarray]:
    """(fidelity, lever) -> the seeds' values of `metric`."""
    out = defaultdict(list)
    for r in rows:
        if (v := names.finite(r.metrics.get(metric))) is not None:
            out[(r.fidelity, r.lever)].append(v)
    return {k: np.array(v) for k, v in out.items()}


def agreement(c: dict, cheap: str, full: str, rng) -> tuple[float, float, float]:
    """Spearman's rho of the levers' seed means at `cheap` against `full`, with its bootstrap interval."""
    levers = sorted(lv for f, lv in c if f == cheap and (full, lv) in c)
    if len(levers) < 3:
        return float("nan"), float("nan"), float("nan")

    def means(fid, pick):
        return np.array([pick(c[(fid, lv)]).mean() for lv in levers])

    point = spearman(means(cheap, lambda v: v), means(full, lambda v: v))
    boot = [spearman(means(cheap, lambda v: rng.choice(v, len(v))), means(full, lambda v: rng.choice(v, len(v))))
            for _ in range(RESAMPLES)]
    low, high = np.nanpercentile(boot, [2.5, 97.5])
    return point, float(low), float(high)


def ceiling(c: dict, full: str, rng) -> tuple[float, float, float]:
    """The full fidelity against itself: seed 0's ranking against the mean of the other seeds, and the
    same over random splits of each cell's seeds (one seed against the rest)."""
    levers = sorted(lv for f, lv in c if f == full and len(c[(f, lv)]) > 1)
    if len(levers) < 3:
        return float("nan"), float("nan"), float("nan")
    split = []
    for _ in range(RESAMPLES):
        one, rest = [], []
        for lv in levers:
            v = rng.permutation(c[(full, lv)])
            one.append(v[0])
            rest.append(v[1:].mean())
        split.append(spearman(np.array(one), np.array(rest)))
    low, high = np.nanpercentile(split, [2.5, 97.5])
    return float(np.nanmedian(split)), float(low), float(high)


def agreement_table(rows: list[study.Job], fidelities: list[str], fulls: list[str]) -> str:
    """For each full fidelity: each cheaper fidelity's agreement with it, and its own seeds' (the ceiling)."""
    rng = np.random.default_rng(SEED)
    out = ["| fidelity | against | jobs | median job (s) | rho, validation AUC [95% CI] | "
           "rho, shifted validation AUC [95% CI] |", "|---|---|---:|---:|---|---|"]
    cost = {fid: np.median([r.seconds for r in rows if r.fidelity == fid]) for fid in fidelities}
    for full in fulls:
        for fid in [f for f in fidelities if f == full or cost[f] < cost.get(full, np.inf)]:
            n, secs = sum(r.fidelity == fid for r in rows), cost[fid]
            shown = []
            for metric in RANKED.values():
                c = cells(rows, metric)
                rho = ceiling(c, full, rng) if fid == full else agreement(c, fid, full, rng)
                shown.append("n/a" if np.isnan(rho[0]) else f"{rho[0]:+.2f} [{rho[1]:+.2f}, {rho[2]:+.2f}]")
            against = "itself: one seed vs the rest" if fid == full else full
            out.append(f"| {fid} | {against} | {n} | {secs:.0f} | " + " | ".join(shown) + " |")
    return "\n".join(out)


def levers_table(rows: list[study.Job], fidelities: list[str]) -> str:
    out = ["| fidelity | lever | seeds | validation AUC | shifted validation AUC | external AUC | accuracy | "
           "sensitivity | specificity |", "|---|---|---:|---|---|---|---|---|---|"]
    for fid in fidelities:
        for lever in sorted({r.lever for r in rows if r.fidelity == fid}):
            mine = [r.metrics for r in rows if r.fidelity == fid and r.lever == lever]
            out.append(f"| {fid} | {lever} | {len(mine)} | " + " | ".join(
                [study.mean_sd([m.get(k) for m in mine], 4) for k in RANKED.values()]
                + [study.mean_sd([m.get(k) for m in mine]) for k in REPORTED]) + " |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True, help="the study's store folder (mlflow.db and artifacts)")
    p.add_argument("--experiment", default="kermany-fidelity")
    p.add_argument("--full", action="append", help="a fidelity the others are judged against (repeatable; "
                   "default trainer.image_size=128)")
    p.add_argument("--also", nargs=2, action="append", default=[], metavar=("STORE", "EXPERIMENT"),
                   help="the jobs of another store's experiment too (repeatable)")
    p.add_argument("--write", action="store_true", help="write the tables into docs/fidelity.md's blocks")
    args = p.parse_args()
    rows = [job for store, experiment in [(args.store, args.experiment), *args.also]
            for job in study.jobs(store, experiment)]
    fidelities = sorted({r.fidelity for r in rows}, key=lambda f: np.median([r.seconds for r in rows if r.fidelity == f]))
    fulls = args.full or ["trainer.image_size=128"]
    agreement_text, levers_text = agreement_table(rows, fidelities, fulls), levers_table(rows, fidelities)
    if args.write:
        import docblocks

        docblocks.write("fidelity-agreement", agreement_text, PAGE)
        docblocks.write("fidelity-levers", levers_text, PAGE)
    print(agreement_text + "\n\n" + levers_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
