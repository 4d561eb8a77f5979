"""The trust figures (README's "When not to trust a prediction", docs/trust.md's measurements), from the store
of the job they measure, never typed by hand.

    python docs/trust_results.py job --store DIR [--experiment kermany] [--run ID] --block NAME
    python docs/trust_results.py ood --store DIR --nonxray FOLDER --films FOLDER --block NAME
    python docs/trust_results.py shift --store DIR --folder LABEL=FOLDER [LABEL=FOLDER ...] --block NAME
    python docs/trust_results.py referral --store DIR --targets 0.95 0.97 --block NAME
    python docs/trust_results.py summary --store DIR --nonxray FOLDER --films FOLDER --shift LABEL=FOLDER \
        [--heldout STORE EXPERIMENT LABEL=FOLDER] --refer 0.95        # the README's table

The job is the latest FINISHED job of the experiment (or --run). Everything else is its record:
its test metrics and their CIs; its logged validation and test predictions (the subtype counts, and the
referral band a target would choose on validation, read on the test films: `pneumo.evaluation.referral`,
the job's own code); and the `pneumo shift FOLDER` runs recorded under it (the folder's films, the domain
AUC, the share the out-of-distribution guard flags: the same guard `pneumo predict` applies). A FOLDER is
matched by its last path component. Each block is written between its markers in README.md or
docs/trust.md (`--print`: to stdout only).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "docs")]

import docblocks as blocks  # noqa: E402 -- docs/docblocks.py, beside this file
import trust_records as records  # noqa: E402 -- docs/trust_records.py, beside this file
from docblocks import COUNT, INTERVAL, NUMBER, SHARE  # noqa: E402

from pneumo.evaluation import format  # noqa: E402 -- the checkout's pneumo, put on the path above
from pneumo.evaluation import shift as shift_check  # noqa: E402
from pneumo.record import names  # noqa: E402

PAGES = {"trust": ROOT / "README.md"}  # a block not named here is in docs/trust.md
OOD_TARGETS = (">= 95%", "<= 5%")  # issue 19's: non-X-ray images flagged, real films flagged
MIN_COVERAGE = 0.80  # issue 19's referral target: the accuracy asked for on at least this share of films

# What each field of the rows below holds (docblocks.Row.fields): the tests read quoted tables back with them.
TARGET = r"0\.\d+"
FIELDS = {
    **dict.fromkeys(("value", "low", "high", "coverage", "accuracy", "all", "val_coverage", "val_accuracy",
                     "sensitivity", "specificity", "pooled"), rf"{NUMBER}|-"),  # format.number: "-" if undefined
    **dict.fromkeys(("films", "flagged", "images", "bacteria_films", "virus_films"), COUNT),
    **dict.fromkeys(("val", "test", "share", "ood_share", "prevalence", "reference"), SHARE),
    **dict.fromkeys(("auc", "bacteria", "virus"), rf"{INTERVAL}|{NUMBER}|-"),  # format.metric
    "ci": rf"\[{NUMBER}, {NUMBER}\]", "target": TARGET, "min_coverage": TARGET, "reached": "reached|not reached",
    "split": "external set|carved test split", "verdict": f"{re.escape(shift_check.SHIFTED)}|{re.escape(shift_check.SAME)}",
    "band": rf"none \(width 0\)|\({NUMBER}, {NUMBER}\)|validation needs no band|band \({NUMBER}, {NUMBER}\)",
}


def row(template: str) -> blocks.Row:
    """A row whose fields are typed by FIELDS."""
    return blocks.Row(template, {k: v for k, v in FIELDS.items() if f"{{{k}}}" in template})


JOB_HEADER = ["| | value | 95% CI |", "|---|---:|---|"]
JOB = {
    **{m: row(f"| {m} | {{value}} | {{ci}} |") for m in (names.TEST_AUC, names.TEST_ACCURACY, names.TEST_SENSITIVITY)},
    **{s: row(f"| {names.subtype_metric(names.TEST_SENSITIVITY, s)} ({{films}} films) | {{value}} | {{ci}} |")
       for s in records.SUBTYPES},
    names.TEST_SPECIFICITY: row(f"| {names.TEST_SPECIFICITY} | {{value}} | {{ci}} |"),
    "ood": row(f"| {names.VAL_OOD_FLAGGED} / {names.TEST_OOD_FLAGGED} | {{val}} / {{test}} | |"),
    "band": row("| referral band (target {target} on validation) | ({low}, {high}) | |"),
    "decided": row("| test coverage, decided accuracy | {coverage}, {accuracy} (vs {all} deciding all) | |"),
}
OOD_HEADER = ["| films | flagged | target |", "|---|---:|---:|"]
OOD = {"nonxray": row(f"| non-X-ray images | **{{flagged}} / {{images}} = {{share}}** | {OOD_TARGETS[0]} |"),
       "films": row(f"| external films | **{{flagged}} / {{images}} = {{share}}** | {OOD_TARGETS[1]} |")}
SHIFT_HEADER = ["| folder | films | domain AUC [95% CI] | flagged OOD | predicted PNEUMONIA | verdict |",
                "|---|---:|---|---:|---:|---|"]
SHIFT = {"folder": row("| {label} | {images} | {auc} | {ood_share} | {prevalence} (validation {reference}) | {verdict} |")}
REFERRAL_HEADER = ["| target (validation) | band | validation: coverage, decided accuracy | "
                   "test set: coverage, decided accuracy, sensitivity, specificity |", "|---:|---|---|---|"]
REFERRAL = {"target": row("| {target} | {band} | {val_coverage}, {val_accuracy} | "
                          "{coverage}, {accuracy}, {sensitivity}, {specificity} |")}
SUMMARY_HEADER = ["| check | result |", "|---|---|"]
SUMMARY = {
    "subtypes": row("| sensitivity by subtype, {split} (`pneumo compare --experiment {experiment}`) | bacteria "
                    "{bacteria} ({bacteria_films} films), virus {virus} ({virus_films} films); pooled {pooled}, "
                    "specificity {specificity} |"),
    "nonxray": row("| non-X-ray images flagged by the guard ({images}: photographs, MRI and CT-like slices, inverted "
                   "and rotated films, blank frames) | {flagged} ({share}) |"),
    "films": row("| external films flagged ({images}) | {flagged} ({share}) |"),
    "shift": row("| `pneumo shift`, {label} ({images}{note}) | domain AUC {auc}: {verdict} |"),
    "referral": row("| referral band chosen on validation (target {target}), {split} | accuracy {accuracy} at "
                    "coverage {coverage} ({band}): the target, {target} at {min_coverage}, is {reached} |"),
}
HELDOUT_NOTE = "; a small model, as the recipe holds none out but validation"
FORMATS = {"job": (JOB_HEADER, JOB), "ood": (OOD_HEADER, OOD), "shift": (SHIFT_HEADER, SHIFT),
           "referral": (REFERRAL_HEADER, REFERRAL), "summary": (SUMMARY_HEADER, SUMMARY)}


# -- the tables ----------------------------------------------------------------------------------


def job_table(client, job) -> list[str]:
    m = job.data.metrics
    y, _, patients = records.predictions(client, job, names.PREDICTIONS_ARTIFACT)
    films = records.subtype_films(patients, y)
    out = []
    for key, row in JOB.items():
        metric = names.subtype_metric(names.TEST_SENSITIVITY, key) if key in records.SUBTYPES else key
        if metric in m:
            low, high = (m.get(b) for b in names.ci_names(metric))
            out.append(row.render(value=format.number(m[metric]), ci=f"[{format.number(low)}, {format.number(high)}]",
                                  films=films.get(key)))
    out.append(JOB["ood"].render(val=records.share(m[names.VAL_OOD_FLAGGED]), test=records.share(m[names.TEST_OOD_FLAGGED])))
    if names.REFER_LOW in m:
        out.append(JOB["band"].render(target=job.data.params.get("evaluation.refer", "?"),
                                      low=format.number(m[names.REFER_LOW]), high=format.number(m[names.REFER_HIGH])))
        out.append(JOB["decided"].render(coverage=format.number(m[names.TEST_COVERAGE]),
                                         accuracy=format.number(m[names.TEST_DECIDED_ACCURACY]),
                                         all=format.number(m[names.TEST_ACCURACY])))
    return JOB_HEADER + out


def ood_table(client, job, nonxray: str, films: str) -> list[str]:
    out = []
    for key, folder in (("nonxray", nonxray), ("films", films)):
        k, n = records.flagged(records.shift_run(client, job, folder))
        out.append(OOD[key].render(flagged=k, images=n, share=records.share(k / n)))
    return OOD_HEADER + out


def shift_table(client, job, folders: list[tuple[str, str]]) -> list[str]:
    out = []
    for label, folder in folders:
        run = records.shift_run(client, job, folder)
        m = run.data.metrics
        out.append(SHIFT["folder"].render(
            label=label, images=int(m[names.IMAGES]), auc=format.metric(m, names.SHIFT_AUC),
            ood_share=records.share(m[names.SHIFT_OOD_FLAGGED]), prevalence=records.share(m[names.SHIFT_PREVALENCE]),
            reference=records.share(m[names.TRAIN_PREVALENCE]), verdict=run.data.tags[names.TAG_SHIFT_VERDICT]))
    return SHIFT_HEADER + out


def referral_table(client, job, targets: list[float]) -> list[str]:
    out = []
    for target in targets:
        b = records.band_at(client, job, target)
        low, high = b["band"]
        v, t = b["val"], b["test"]
        out.append(REFERRAL["target"].render(
            target=f"{target:g}", band="none (width 0)" if low == high else f"({format.number(low)}, {format.number(high)})",
            val_coverage=format.number(v[names.TEST_COVERAGE]), val_accuracy=format.number(v[names.TEST_DECIDED_ACCURACY]),
            **{k: format.number(t[m]) for k, m in (("coverage", names.TEST_COVERAGE),
                                                    ("accuracy", names.TEST_DECIDED_ACCURACY),
                                                    ("sensitivity", names.TEST_DECIDED_SENSITIVITY),
                                                    ("specificity", names.TEST_DECIDED_SPECIFICITY))}))
    return REFERRAL_HEADER + out


def summary_table(client, job, experiment: str, nonxray: str, films: str, shifts: list[tuple[str, str]],
                  heldout: tuple | None, refer: float) -> list[str]:
    m = job.data.metrics
    y, _, patients = records.predictions(client, job, names.PREDICTIONS_ARTIFACT)
    n = records.subtype_films(patients, y)
    sens = {s: format.metric(m, names.subtype_metric(names.TEST_SENSITIVITY, s)) for s in records.SUBTYPES}
    out = [SUMMARY["subtypes"].render(
        split=records.split_label(job), experiment=experiment, bacteria=sens["bacteria"], bacteria_films=n["bacteria"],
        virus=sens["virus"], virus_films=n["virus"], pooled=format.number(m[names.TEST_SENSITIVITY]),
        specificity=format.number(m[names.TEST_SPECIFICITY]))]
    for key, folder in (("nonxray", nonxray), ("films", films)):
        k, images = records.flagged(records.shift_run(client, job, folder))
        out.append(SUMMARY[key].render(images=images, flagged=k, share=records.share(k / images)))
    others = [(client, job, label, folder, "") for label, folder in shifts]
    if heldout:
        store, exp, (label, folder) = heldout
        other = records.connect(store)
        others.append((other, records.job_run(other, exp), label, folder, HELDOUT_NOTE))
    for c, j, label, folder, note in others:
        run = records.shift_run(c, j, folder)
        out.append(SUMMARY["shift"].render(label=label, images=int(run.data.metrics[names.IMAGES]), note=note,
                                           auc=format.metric(run.data.metrics, names.SHIFT_AUC),
                                           verdict=run.data.tags[names.TAG_SHIFT_VERDICT]))
    b = records.band_at(client, job, refer)
    t = b["test"]
    reached = t[names.TEST_COVERAGE] >= MIN_COVERAGE and t[names.TEST_DECIDED_ACCURACY] >= refer
    low, high = b["band"]
    out.append(SUMMARY["referral"].render(
        target=f"{refer:g}", split=records.split_label(job), accuracy=format.number(t[names.TEST_DECIDED_ACCURACY]),
        coverage=format.number(t[names.TEST_COVERAGE]), min_coverage=f"{MIN_COVERAGE:.2f}",
        band="validation needs no band" if low == high else f"band ({format.number(low)}, {format.number(high)})",
        reached="reached" if reached else "not reached"))
    return SUMMARY_HEADER + out


def parse(kind: str, text: str) -> list[tuple[str, dict[str, str]]]:
    """The rows of a quoted block of `kind` (job, ood, shift, referral, summary), as `blocks.parse_rows`."""
    header, rows = FORMATS[kind]
    return blocks.parse_rows(text, header, rows)


def labelled(pairs: list[str]) -> list[tuple[str, str]]:
    out = []
    for pair in pairs:
        label, sep, folder = pair.rpartition("=")
        if not sep or not label:
            raise SystemExit(f"{pair!r}: expected LABEL=FOLDER")
        out.append((label, folder))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=sorted(FORMATS))
    p.add_argument("--store", required=True, help="the store folder (mlflow.db and its artifacts)")
    p.add_argument("--experiment", default="kermany")
    p.add_argument("--run", help="the job's run id (default: the experiment's latest FINISHED job)")
    p.add_argument("--block", default="trust", help="the block to write (README.md's `trust`, or docs/trust.md's)")
    p.add_argument("--print", action="store_true", help="print the table, write nothing")
    p.add_argument("--nonxray", help="ood, summary: the folder of non-X-ray images `pneumo shift` checked")
    p.add_argument("--films", help="ood, summary: the folder of real films `pneumo shift` checked")
    p.add_argument("--folder", nargs="+", default=[], help="shift: LABEL=FOLDER of each row")
    p.add_argument("--shift", nargs="+", default=[], help="summary: LABEL=FOLDER of each shift row")
    p.add_argument("--heldout", nargs=3, metavar=("STORE", "EXPERIMENT", "LABEL=FOLDER"),
                   help="summary: a shift row from another store's job (held-out films of its collection)")
    p.add_argument("--targets", nargs="+", type=float, default=[0.95, 0.97], help="referral: the targets")
    p.add_argument("--refer", type=float, default=0.95, help="summary: the referral target")
    args = p.parse_args(argv)
    client = records.connect(args.store)
    job = records.job_run(client, args.experiment, args.run)
    if args.kind in ("ood", "summary") and not (args.nonxray and args.films):
        p.error(f"{args.kind} needs --nonxray and --films")
    lines = {"job": lambda: job_table(client, job),
             "ood": lambda: ood_table(client, job, args.nonxray, args.films),
             "shift": lambda: shift_table(client, job, labelled(args.folder)),
             "referral": lambda: referral_table(client, job, args.targets),
             "summary": lambda: summary_table(client, job, args.experiment, args.nonxray, args.films,
                                              labelled(args.shift), args.heldout and (
                                                  args.heldout[0], args.heldout[1], labelled([args.heldout[2]])[0]),
                                              args.refer)}[args.kind]()
    text = "\n".join(lines)
    if not args.print:
        blocks.write(args.block, text, PAGES.get(args.block, ROOT / "docs" / "trust.md"))
    print(text)


if __name__ == "__main__":
    main()
