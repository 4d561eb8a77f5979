"""docs/screen.md's tables, from the store of `pneumo sweep kermany-screen` (not typed by hand).

    .venv/bin/python docs/screen.py --store STORE [--experiment kermany-screen] [--write]
    .venv/bin/python docs/screen.py --store STORE --experiment kermany-confirm --prefix confirm --write
    .venv/bin/python docs/screen.py --store STORE --experiment kermany-confirm --lever baseline,cnn \\
        --fidelity trainer.image_size=128 --prefix confirm --write paired
    .venv/bin/python docs/screen.py --store STORE --experiment kermany-confirm --lever baseline \\
        --by-fidelity trainer.image_size=128          # prints; no page has a block for it yet


One row per lever: its seeds' mean and SD of the validation AUC and of the shifted validation AUC (the worst
over fixed re-renderings of the validation films), the difference of the shifted one from the baseline with
Welch's 95% interval over seeds (pneumo.evaluation.seeds, as `pneumo compare` ranks), and what the external
set says (reported, never used to choose: the external AUC with Student's 95% interval over the seeds).
Then ensembles made after the fact from the jobs' logged
predictions: each lever's seeds averaged, and the resnet and the CNN averaged (a cross-architecture ensemble),
each thresholded on its own validation output. --write puts them in docs/screen.md's blocks NAME-levers and
NAME-ensembles (--prefix NAME, `screen` by default), and the levers table in docs/results.md's NAME-levers too.
Where the resnet and the CNN share seeds, a seed-paired test of their average against the resnet alone (block
NAME-paired, in docs/results.md too). --by-fidelity REFERENCE makes a row per fidelity instead (one lever at
several image sizes, e.g. `--lever baseline --by-fidelity trainer.image_size=128`), each tested against
REFERENCE's seeds.
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
LEVERS_HEADER = ("| {key} | seeds | val AUC | shifted val AUC | shifted vs {reference} [95% Welch] | external AUC [95% CI] | "
                 "accuracy | sensitivity | specificity | job (s) |\n|---|---:|---|---|---|---|---|---|---|---:|")
PAIRED_HEADER = ("| seed | resnet val AUC | resnet + cnn val AUC | difference | resnet external AUC | "
                 "resnet + cnn external AUC |\n|---|---:|---:|---|---:|---:|")
ENSEMBLES_HEADER = ("| ensemble (after the fact) | members | val AUC | external AUC [95% CI] | accuracy [95% CI] | "
                    "sensitivity | specificity |\n|---|---:|---:|---|---|---|---|")


def by_lever(jobs: list[study.Job], key: str = "lever") -> dict[str, list[study.Job]]:
    """The jobs grouped by their lever, or by their fidelity (key="fidelity": one lever at several image sizes)."""
    out = defaultdict(list)
    for j in jobs:
        out[getattr(j, key)].append(j)
    return dict(out)


def levers_table(groups: dict[str, list[study.Job]], reference: str = "baseline", key: str = "lever") -> str:
    """A row per group, best first by the seeds' mean shifted val AUC; each tested against `reference`'s seeds."""
    spread = {lv: seeds.spread([j.metrics[RANKED] for j in js if RANKED in j.metrics], CONFIDENCE)
              for lv, js in groups.items()}
    base = spread.get(reference)
    rows = []
    for lever in sorted(groups, key=lambda lv: -spread[lv].mean):
        js = groups[lever]
        vs = "-" if lever == reference or base is None else _versus(base, spread[lever])
        m = lambda name, js=js: [j.metrics.get(name) for j in js]  # noqa: E731
        rows.append(f"| {lever} | {len(js)} | {study.mean_sd(m(names.MODEL_VAL_AUC), 4)} | "
                    f"{study.mean_sd(m(RANKED), 4)} | {vs} | {_over_seeds(m(names.TEST_AUC))} | "
                    f"{study.mean_sd(m(names.TEST_ACCURACY))} | {study.mean_sd(m(names.TEST_SENSITIVITY))} | "
                    f"{study.mean_sd(m(names.TEST_SPECIFICITY))} | {np.median([j.seconds for j in js]):.0f} |")
    return LEVERS_HEADER.format(key=key, reference=reference) + "\n" + "\n".join(rows)


def _over_seeds(values) -> str:
    s = seeds.spread([v for v in values if v is not None], CONFIDENCE)
    return f"{s.mean:.3f}" if s.low is None else f"{s.mean:.3f} [{s.low:.3f}, {s.high:.3f}]"


def _versus(base, other) -> str:
    d = seeds.versus(base, other, CONFIDENCE)
    if d is None:
        return "1 seed: not tested"
    verdict = "tied" if d.tied else ("better" if d.difference > 0 else "worse")
    return f"{d.difference:+.4f} [{d.low:+.4f}, {d.high:+.4f}] {verdict}"


def ensembles_table(groups: dict[str, list[study.Job]], bootstrap: int,
                    pairs: list[tuple[str, dict, dict]] | None = None) -> str:
    """`pairs`: cross_architecture_pairs' averages, computed once for this table and paired_table."""
    rows = []
    for lever in sorted(groups):
        if len(groups[lever]) > 1:
            rows.append(_ensemble_row(f"{lever}, its seeds", len(groups[lever]), study.ensemble(groups[lever], bootstrap)))
    if pairs:
        for seed, _, both in pairs:
            rows.append(_ensemble_row(f"resnet + cnn (cross-architecture), seed {seed}", 2, both))
        every = groups["baseline"] + groups["cnn"]
        rows.append(_ensemble_row("resnet + cnn (cross-architecture), every seed", len(every), study.ensemble(every, bootstrap)))
    return ENSEMBLES_HEADER + "\n" + "\n".join(rows)


def _ensemble_row(label: str, members: int, e: dict) -> str:
    return (f"| {label} | {members} | {e[names.MODEL_VAL_AUC]:.4f} | {study.with_ci(e, names.TEST_AUC)} | "
            f"{study.with_ci(e, names.TEST_ACCURACY)} | {study.with_ci(e, names.TEST_SENSITIVITY)} | "
            f"{study.with_ci(e, names.TEST_SPECIFICITY)} |")


def cross_architecture_pairs(groups: dict[str, list[study.Job]], bootstrap: int) -> list[tuple[str, dict, dict]]:
    """(seed, the resnet's metrics, the resnet and the CNN of that seed averaged) for each seed both ran."""
    return [(a.seed, a.metrics, study.ensemble([a, b], bootstrap))
            for a in groups.get("baseline", []) for b in groups.get("cnn", []) if a.seed == b.seed]


def paired_table(pairs: list[tuple[str, dict, dict]]) -> str:
    """Does averaging the CNN into the resnet raise the validation AUC by more than seed noise? Seed by seed (the
    two share the seed, so the pair's difference removes what the seed does to both), then Student's 95%
    interval on the mean difference over seeds: better or worse where it excludes zero, tied where it holds it.
    The external AUC is reported, never used to choose."""
    rows, diffs = [], []
    for seed, alone, both in pairs:
        d = both[names.MODEL_VAL_AUC] - alone[names.MODEL_VAL_AUC]
        diffs.append(d)
        rows.append(f"| {seed} | {alone[names.MODEL_VAL_AUC]:.4f} | {both[names.MODEL_VAL_AUC]:.4f} | {d:+.4f} | "
                    f"{_fmt(alone.get(names.TEST_AUC))} | {_fmt(both.get(names.TEST_AUC))} |")
    if len(diffs) > 1:
        s = seeds.spread(diffs, CONFIDENCE)
        verdict = "tied" if s.low <= 0 <= s.high else ("better" if s.mean > 0 else "worse")
        rows.append(f"| mean over {s.n} seeds | | | {s.mean:+.4f} [{s.low:+.4f}, {s.high:+.4f}] {verdict} | | |")
    return PAIRED_HEADER + "\n" + "\n".join(rows)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


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
    p.add_argument("--lever", help="only these levers (comma-separated)")
    p.add_argument("--fidelity", help="only the jobs at this fidelity (their other overrides, e.g. trainer.image_size=128)")
    p.add_argument("--by-fidelity", metavar="REFERENCE",
                   help="a row per fidelity, not per lever (one lever at several image sizes), tested against REFERENCE")
    p.add_argument("--write", nargs="*", choices=["levers", "ensembles", "paired", "sittings"],
                   help="write the tables into docs/screen.md's and docs/results.md's blocks (all, or those named)")
    args = p.parse_args()
    jobs = [j for j in study.jobs(args.store, args.experiment)
            if (not args.lever or j.lever in args.lever.split(",")) and (args.fidelity is None or j.fidelity == args.fidelity)]
    if not jobs:
        raise SystemExit(f"no finished job of {args.experiment!r} in {args.store} matches --lever/--fidelity")
    fidelities, levers_run = sorted({j.fidelity for j in jobs}), sorted({j.lever for j in jobs})
    if args.by_fidelity:
        if len(levers_run) > 1:
            raise SystemExit(f"--by-fidelity compares one lever at several fidelities; these jobs have {levers_run}: "
                             "pick one with --lever")
        if args.by_fidelity not in fidelities:
            raise SystemExit(f"--by-fidelity {args.by_fidelity!r}: no job at it; the jobs' fidelities are {fidelities}")
        groups = by_lever(jobs, "fidelity")
        levers = levers_table(groups, args.by_fidelity, "fidelity")
    else:
        if len(fidelities) > 1:
            raise SystemExit(f"jobs at several fidelities ({fidelities}): a screen compares levers at one "
                             "(pick one with --fidelity, or compare them with --by-fidelity)")
        groups = by_lever(jobs)
        levers = levers_table(groups)
    pairs = cross_architecture_pairs(groups, args.bootstrap) if not args.by_fidelity else []
    ensembles = ensembles_table(groups, args.bootstrap, pairs)
    paired = paired_table(pairs) if pairs else ""
    sittings = ""
    if args.against:
        if len(args.against) > 2:
            raise SystemExit("--against takes a store and, optionally, its experiment")
        sittings = sittings_table(jobs, study.jobs(args.against[0], (args.against[1:] or [args.experiment])[0]))
    if args.write is not None:
        import docblocks

        wanted = set(args.write) or {"levers", "ensembles", "paired", "sittings"}
        if "levers" in wanted:
            docblocks.write(f"{args.prefix}-levers", levers, PAGE)
            docblocks.write(f"{args.prefix}-levers", levers, RESULTS)
        if "ensembles" in wanted and len(ensembles.strip().splitlines()) > 2:  # seeds to average, or the CNN beside
            docblocks.write(f"{args.prefix}-ensembles", ensembles, PAGE)
        if "sittings" in wanted and sittings:
            docblocks.write(f"{args.prefix}-sittings", sittings, PAGE)
        if "paired" in wanted and paired:
            docblocks.write(f"{args.prefix}-paired", paired, PAGE)
            docblocks.write(f"{args.prefix}-paired", paired, RESULTS)
    print("\n\n".join(t for t in (levers, ensembles, paired, sittings) if t))
    return 0


if __name__ == "__main__":
    sys.exit(main())
