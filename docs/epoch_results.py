"""A job's trials epoch by epoch (docs/sweeps.md's table of `val_auc` beside `val_auc_shifted`), from the
store the job wrote, not typed by hand.

    python docs/epoch_results.py --store DIR --experiment kermany-shifted [--metrics val_auc val_auc_shifted]

One row per trial of the experiment's latest FINISHED job, in trial order: each metric's value at each
epoch as its trial run logged it. Written between the `results:epochs-NAME` markers of docs/sweeps.md
(NAME: the experiment), or printed with --print.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "docs")]

import docblocks as blocks  # noqa: E402 -- docs/docblocks.py, beside this file
from docblocks import COUNT, NUMBER, Row  # noqa: E402

from pneumo.record import names  # noqa: E402 -- the checkout's pneumo, put on the path above

PAGE = ROOT / "docs" / "sweeps.md"
LABELS = {names.VAL_AUC: "val_auc by epoch (Keras)", names.VAL_AUC_SHIFTED: "val_auc_shifted by epoch"}
EPOCHS = rf"{NUMBER}(, {NUMBER})*"


def header(metrics: list[str]) -> list[str]:
    return ["| trial | " + " | ".join(LABELS.get(m, f"{m} by epoch") for m in metrics) + " |",
            "|---|" + "---|" * len(metrics)]


def row(metrics: list[str]) -> Row:
    return Row("| {trial} | " + " | ".join(f"{{m{i}}}" for i in range(len(metrics))) + " |",
               {"trial": COUNT, **{f"m{i}": EPOCHS for i in range(len(metrics))}})


def table(client, experiment: str, metrics: list[str]) -> str:
    from trust_records import job_run

    from pneumo.evaluation import format

    job = job_run(client, experiment)
    trials = client.search_runs([job.info.experiment_id], f"tags.`{names.TAG_ROLE}` = '{names.ROLE_TRIAL}' and "
                                f"tags.`{names.PARENT_RUN_ID}` = '{job.info.run_id}'")
    lines = header(metrics)
    for trial in sorted(trials, key=lambda r: int(r.data.tags[names.TAG_TRIAL_ID])):
        history = [sorted(client.get_metric_history(trial.info.run_id, m), key=lambda x: x.step) for m in metrics]
        lines.append(row(metrics).render(trial=trial.data.tags[names.TAG_TRIAL_ID], **{
            f"m{i}": ", ".join(format.number(x.value) for x in h) for i, h in enumerate(history)}))
    return "\n".join(lines)


def parse(text: str, metrics: list[str]) -> list[tuple[str, dict[str, str]]]:
    return blocks.parse_rows(text, header(metrics), {"trial": row(metrics)})


def main(argv=None) -> None:
    from trust_records import connect

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="the store folder (mlflow.db and its artifacts)")
    p.add_argument("--experiment", required=True)
    p.add_argument("--metrics", nargs="+", default=[names.VAL_AUC, names.VAL_AUC_SHIFTED])
    p.add_argument("--print", action="store_true", help="print the table, write nothing")
    args = p.parse_args(argv)
    text = table(connect(args.store), args.experiment, args.metrics)
    if not args.print:
        blocks.write(f"epochs-{args.experiment}", text, PAGE)
    print(text)


if __name__ == "__main__":
    main()
