"""docs/screen.md's tables, from the store of `pneumo sweep kermany-screen` (not typed by hand).

    .venv/bin/python docs/screen.py --store STORE [--experiment kermany-screen] [--write]
    .venv/bin/python docs/screen.py --store STORE --experiment kermany-confirm --prefix confirm --write


One row per lever: its seeds' mean and SD of the validation AUC and of the shifted validation AUC (the worst
over fixed re-renderings of the validation films), the difference of the shifted one from the baseline with
Welch's 95% interval over seeds (pneumo.evaluation.seeds, as `pneumo compare` ranks), and what the external
set says (reported, never used to choose: the external AUC with Student's 95% interval over the seeds).
Then ensembles made after the fact from the jobs' logged
predictions: each lever's seeds averaged, and the resnet and the CNN averaged (a cross-architecture ensemble),
each thresholded on its own validation output. --write puts them in docs/screen.md's blocks NAME-levers and
NAME-ensembles (--prefix NAME, `screen` by default), and the levers table in docs/results.md's NAME-levers too.
--against STORE [EXPERIMENT] compares this screen with another sitting of it (block NAME-sittings): Spearman's rho
between the two sittings' lever means, with docs/fidelity.py's bootstrap over seeds, beside the ceiling seed
noise allows within this sitting (one seed against the mean of the rest).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import study

from pneumo.evaluation import seeds
from pneumo.record import names

RANKED = names.MODEL_VAL_AUC_SHIFTED  # what the screen ranks on (val AUC saturates near 1 on these films)
CONFIDENCE = 0.95
PAGE = study.ROOT / "docs" / "screen.md"
RESULTS = study.ROOT / "docs" / "results.md"
LEVERS_HEADER = ("| lever | seeds | val AUC | shifted val AUC | shifted vs baseline [95% Welch] | external AUC [95% CI] | "
                 "accuracy | sensitivity | specificity | job (s) |\n|---|---:|---|---|---|---|---|---|---|---:|")
ENSEMBLES_HEADER = ("| ensemble (after the fact) | members | val AUC | external AUC [95% CI] | accuracy [95% CI] | "
                    "sensitivity | specificity |\n|---|---:|---:|---|---|---|---|")


def by_lever(jobs: list[study.Job]) -> dict[str, list[study.Job]]:
    out = defaultdict(list)
    for j in jobs:
        out[j.lever].append(j)
    return dict(out)


def levers_table(groups: dict[str, list[study.Job]]) -> str:
    spread = {lv: seeds.spread([j.metrics[RANKED] for j in js if RANKED in j.metrics], CONFIDENCE)
              for lv, js in groups.items()}
    base = spread.get("baseline")
    rows = []
    for lever in sorted(groups, key=lambda lv: -spread[lv].mean):
        js = groups[lever]
        vs = "-" if lever == "baseline" or base is None else _versus(base, spread[lever])
        m = lambda name, js=js: [j.metrics.get(name) for j in js]  # noqa: E731
        rows.append(f"| {lever} | {len(js)} | {study.mean_sd(m(names.MODEL_VAL_AUC), 4)} | "
                    f"{study.mean_sd(m(RANKED), 4)} | {vs} | {_over_seeds(m(names.TEST_AUC))} | "
                    f"{study.mean_sd(m(names.TEST_ACCURACY))} | {study.mean_sd(m(names.TEST_SENSITIVITY))} | "
                    f"{study.mean_sd(m(names.TEST_SPECIFICITY))} | {np.median([j.seconds for j in js]):.0f} |")
    return LEVERS_HEADER + "\n" + "\n".join(rows)


def _over_seeds(values) -> str:
    s = seeds.spread([v for v in values if v is not None], CONFIDENCE)
    return f"{s.mean:.3f}" if s.low is None else f"{s.mean:.3f} [{s.low:.3f}, {s.high:.3f}]"


def _versus(base, other) -> str:
    d = seeds.versus(base, other, CONFIDENCE)
    if d is None:
        return "1 seed: not tested"
    verdict = "tied" if d.tied else ("better" if d.difference > 0 else "worse")
    return f"{d.difference:+.4f} [{d.low:+.4f}, {d.high:+.4f}] {verdict}"


def ensembles_table(groups: dict[str, list[study.Job]], bootstrap: int) -> str:
    rows = []
    for lever in sorted(groups):
        if len(groups[lever]) > 1:
            rows.append(_ensemble_row(f"{lever}, its seeds", groups[lever], bootstrap))
    if "baseline" in groups and "cnn" in groups:
        pairs = [[a, b] for a in groups["baseline"] for b in groups["cnn"] if a.seed == b.seed]
        for pair in pairs:
            rows.append(_ensemble_row(f"resnet + cnn (cross-architecture), seed {pair[0].seed}", pair, bootstrap))
        rows.append(_ensemble_row("resnet + cnn (cross-architecture), every seed", groups["baseline"] + groups["cnn"],
                                  bootstrap))
    return ENSEMBLES_HEADER + "\n" + "\n".join(rows)


def _ensemble_row(label: str, members: list[study.Job], bootstrap: int) -> str:
    e = study.ensemble(members, bootstrap)
    return (f"| {label} | {len(members)} | {e[names.MODEL_VAL_AUC]:.4f} | {study.with_ci(e, names.TEST_AUC)} | "
            f"{study.with_ci(e, names.TEST_ACCURACY)} | {study.with_ci(e, names.TEST_SENSITIVITY)} | "
            f"{study.with_ci(e, names.TEST_SPECIFICITY)} |")


def sittings_table(this: list[study.Job], other: list[study.Job]) -> str:
    """How well two sittings of one screen rank the levers alike, and how well one seed ranks them against the
    rest of its own sitting: the agreement that seed noise alone allows."""
    import fidelity

    rng = np.random.default_rng(fidelity.SEED)
    rows = ([dataclasses.replace(j, fidelity="this") for j in this]
            + [dataclasses.replace(j, fidelity="other") for j in other])
    shared = {j.lever for j in this} & {j.lever for j in other}
    out = ["| ranked on | levers in both | this sitting against the other, rho [95% CI] | "
           "this sitting, one seed against the rest, rho [95% CI] |", "|---|---:|---|---|"]
    for label, metric in fidelity.RANKED.items():
        c = fidelity.cells(rows, metric)
        shown = [fidelity.agreement(c, "this", "other", rng), fidelity.ceiling(c, "this", rng)]
        out.append(f"| {label} | {len(shared)} | " + " | ".join(
            "n/a" if np.isnan(r[0]) else f"{r[0]:+.2f} [{r[1]:+.2f}, {r[2]:+.2f}]" for r in shown) + " |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True, help="the screen's store folder (mlflow.db and artifacts)")
    p.add_argument("--experiment", default="kermany-screen")
    p.add_argument("--bootstrap", type=int, default=1000, help="patient resamples for the ensembles' CIs")
    p.add_argument("--prefix", default="screen", help="the blocks are PREFIX-levers and PREFIX-ensembles")
    p.add_argument("--against", nargs="+", metavar=("STORE", "EXPERIMENT"),
                   help="another sitting of the screen (its store, and its experiment if not --experiment's)")
    p.add_argument("--write", action="store_true", help="write the tables into docs/screen.md's and docs/results.md's blocks")
    args = p.parse_args()
    jobs = study.jobs(args.store, args.experiment)
    fidelities = {j.fidelity for j in jobs}
    if len(fidelities) > 1:
        raise SystemExit(f"jobs at several fidelities ({sorted(fidelities)}): a screen compares levers at one")
    groups = by_lever(jobs)
    levers, ensembles = levers_table(groups), ensembles_table(groups, args.bootstrap)
    sittings = ""
    if args.against:
        if len(args.against) > 2:
            raise SystemExit("--against takes a store and, optionally, its experiment")
        sittings = sittings_table(jobs, study.jobs(args.against[0], (args.against[1:] or [args.experiment])[0]))
    if args.write:
        import docblocks

        docblocks.write(f"{args.prefix}-levers", levers, PAGE)
        if len(ensembles.strip().splitlines()) > 2:  # a lever with seeds to average, or the CNN beside the baseline
            docblocks.write(f"{args.prefix}-ensembles", ensembles, PAGE)
        docblocks.write(f"{args.prefix}-levers", levers, RESULTS)
        if sittings:
            docblocks.write(f"{args.prefix}-sittings", sittings, PAGE)
    print(levers + "\n\n" + ensembles + ("\n\n" + sittings if sittings else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
