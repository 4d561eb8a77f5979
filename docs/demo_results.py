"""Write docs/results.md's quoted sweep results from what the code produces now, never by hand.

    python docs/demo_results.py demo     # `pneumo sweep demo` in a fresh folder, as `make demo` in a fresh clone
    python docs/demo_results.py smoke    # the smoke sweep: the block tests/test_reruns.py checks
    python docs/demo_results.py demo trainer.repeats=3 --block demo-seeds   # overrides; another block
    python docs/demo_results.py demo --store mlruns    # from a store you have (after `make demo`)
    python docs/demo_results.py demo --keep /tmp/demo  # keep the fresh store: docs/screenshot.py /tmp/demo/mlruns demo

Runs the sweep with an empty data cache and store in a temporary folder (the synthetic
set is generated as a fresh clone generates it), then replaces the README block between
`<!-- results:NAME ... -->` and `<!-- /results:NAME -->` with its leaderboard: the jobs in
the order the sweep's own closing table ranks them (by validation AUC), their test numbers
as `pneumo compare` shows them (with trainer.repeats, the test AUC's mean and SD over the
seeds too), and what they ran on.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "docs")]

import docblocks as blocks  # noqa: E402 -- docs/docblocks.py, beside this file

from pneumo.config import paths  # noqa: E402 -- the checkout's pneumo, put on the path above
from pneumo.evaluation import format  # noqa: E402
from pneumo.record import names  # noqa: E402

README = ROOT / "docs" / "results.md"  # the page that holds the generated tables (README.md links to it)
COLUMNS = ("job", names.VAL_AUC, "test_auc [95% CI]", names.TEST_SENSITIVITY, names.TEST_SPECIFICITY, names.THRESHOLD)


def run_sweep(name: str, folder: Path, overrides: list[str] = (), env_extra: dict | None = None) -> Path:
    """`pneumo sweep NAME [overrides]` with its cache, store and outputs in `folder` (and `env_extra` in its
    environment); returns the store."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # the fresh store, not yours
    cmd = [sys.executable, "-m", "pneumo", "sweep", name, *overrides, f"paths.cache={folder}/cache",
           f"tracking.store={folder}/mlruns", f"hydra.sweep.dir={folder}/multirun"]
    subprocess.run(cmd, cwd=folder, env={**env, **(env_extra or {}), "PYTHONPATH": str(ROOT)}, check=True)
    return folder / "mlruns"


def block(store: Path, experiment: str, command: str) -> str:
    """The README block: a markdown leaderboard of the experiment's finished jobs (reruns left out)."""
    from mlflow import MlflowClient

    from pneumo.commands import leaderboard
    from pneumo.record.store import connect

    opened = connect(store=store)
    rows = [r for r in leaderboard.leaderboard(experiment, names.VAL_AUC, store=opened)
            if r.status == "FINISHED" and not r.rerun_of]
    if not rows:
        raise SystemExit(f"no finished jobs in experiment {experiment!r} of {store}")
    seeded = any(r.seeds for r in rows)
    columns = [*COLUMNS, *(["test_auc over seeds (mean ± sd)", "model_val_auc over seeds"] if seeded else [])]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        m = r.metrics
        cells = [r.run_name, format.number(m[names.VAL_AUC]), format.metric(m, names.TEST_AUC),
                 format.number(m[names.TEST_SENSITIVITY]), format.number(m[names.TEST_SPECIFICITY]),
                 format.number(m[names.THRESHOLD])]
        if seeded:
            seeds, n = r.seeds or {}, int(r.seed_repeats or 0)
            cells += [f"{format.number(seeds[k].mean)} ± {format.number(seeds[k].sd)} ({n} seeds)" if k in seeds else "-"
                      for k in (names.TEST_AUC, names.MODEL_VAL_AUC)]
        lines.append("| " + " | ".join(cells) + " |")
    run = MlflowClient(opened.uri).get_run(rows[0].run_id)  # its dataset input holds the test split's size
    tags, backend = run.data.tags, run.data.tags.get(names.TAG_KERAS_BACKEND, "?")
    ran_on = (f"Keras {tags.get(names.TAG_KERAS_VERSION, '?')} on {backend} "
              f"{tags.get(names.VERSION_TAGS.get(backend, ''), '?')}, "
              f"{tags.get(names.TAG_DEVICE, 'device not recorded')}, {_test_images(run)} test images")
    lines += ["", f"Written by `{command}` ({ran_on})."]
    return "\n".join(lines)


def table(text: str) -> list[str]:
    """The table rows of a block: what a test compares (the line of versions says where they came from)."""
    return blocks.table(text)


WRITTEN_BY = re.compile(r"^Written by `(?P<command>[^`]+)` \((?P<ran_on>.+), (?P<images>\d+) test images\)\.$", re.M)


def parse(text: str) -> dict:
    """A block's structure and numbers: its columns, its rows by job, what it ran on (Keras, backend,
    device) and how many test images. Raises ValueError on a block that is not as `block` writes it."""
    written = WRITTEN_BY.search(text)
    if not written:
        raise ValueError("no well-formed line `Written by `COMMAND` (Keras ... on BACKEND ..., DEVICE, N test images).`")
    lines = table(text)
    if len(lines) < 3 or set(lines[1]) != {"|", "-"}:
        raise ValueError("no markdown table (header, rule, rows)")
    rows = [blocks.cells(line) for line in lines[2:]]
    jobs = [r[0] for r in rows]
    if len(set(jobs)) != len(jobs):
        raise ValueError(f"a job is listed twice: {jobs}")
    return {"columns": blocks.cells(lines[0]), "rows": {r[0]: r[1:] for r in rows}, "ran_on": written["ran_on"],
            "images": int(written["images"])}


# How far each column of a quoted table may move when it is produced on another machine line (another CPU,
# other library versions): absolute, for each number of a cell (an AUC's CI bounds with the AUC). The spread
# is measured by docs/spread.py (its block in docs/results.md, beside the table it guards) across CPU
# kernels: oneDNN capped at AVX2 and at SSE4.1, TensorFlow without oneDNN, and the quoted table's own host.
# A CPU moves a number by whole steps of its metric or not at all (a film crosses the threshold, a pair of
# films swaps order), so each tolerance is the measured spread in whole steps of that table's films (at
# least one step), plus the last printed digit (0.001). Another backend or seed is not covered: a table
# quoted from other versions is written again, not excused. On the machine line that wrote a table, every
# cell must be equal; a column not listed must be equal everywhere.
TOLERANCES = {
    # 22 test films (14 PNEUMONIA, 8 NORMAL), 14 validation films (11, 3). Measured: AVX2 kernels moved
    # model=cnn's test AUC by 0.009 (one pair); the other kernels and the quoted avx2 host moved nothing.
    "smoke": {
        names.VAL_AUC: 0.032,  # one validation pair, 1/33 = 0.030 (measured 0.000)
        "test_auc [95% CI]": 0.010,  # one test pair, 1/112 = 0.009 (measured 0.009)
        names.TEST_SENSITIVITY: 0.073,  # one PNEUMONIA film, 1/14 = 0.071 (measured 0.000)
        names.TEST_SPECIFICITY: 0.126,  # one NORMAL film, 1/8 = 0.125 (measured 0.000)
        names.THRESHOLD: 0.001,  # a probability: no step (measured 0.000)
    },
    # 154 test films (111 PNEUMONIA, 43 NORMAL), 121 validation films (90, 31): steps of 0.009 and 0.023 for
    # sensitivity and specificity, under 0.001 for an AUC. Twelve epochs and early stopping amplify a rounding:
    # between any two of three CPUs (the quoted avx2 host, an avx512f host, its kernels capped at AVX2) every
    # column moved by several steps, as a seed moves it (the seed spread table), so these are that measured
    # spread plus the printed digit. Three CPUs are few: `make nightly` on one that moves a column further
    # fails, and its spread is measured again (python docs/spread.py demo --variants avx2).
    "demo": {
        names.VAL_AUC: 0.085,  # measured 0.084
        "test_auc [95% CI]": 0.158,  # measured 0.157
        names.TEST_SENSITIVITY: 0.083,  # 9 films, 0.081 (measured 0.081)
        names.TEST_SPECIFICITY: 0.118,  # 5 films, 0.116 (measured 0.116)
        names.THRESHOLD: 0.179,  # measured 0.178
    },
}


def differences(quoted: str, produced: str, tolerances: dict[str, float]) -> list[str]:
    """What differs between a quoted block and the one the code produces now; [] when they agree.

    Structure (columns, jobs, test images) must be equal. On the same machine and versions (the
    `Written by` line's parenthesis) every cell must be equal; elsewhere each number of a column within
    its tolerance (`tolerances[column]`; a column without one must be equal).
    """
    q, p = parse(quoted), parse(produced)
    out = [f"{what}: quoted {q[key]!r}, produced {p[key]!r}" for key, what in
           (("columns", "columns"), ("images", "test images")) if q[key] != p[key]]
    if sorted(q["rows"]) != sorted(p["rows"]):
        out.append(f"jobs: quoted {sorted(q['rows'])}, produced {sorted(p['rows'])}")
    same_machine = q["ran_on"] == p["ran_on"]
    for job in sorted(set(q["rows"]) & set(p["rows"])):
        for column, a, b in zip(q["columns"][1:], q["rows"][job], p["rows"][job]):
            tolerance = None if same_machine else tolerances.get(column)
            if tolerance is None and a != b:
                why = "same machine and versions" if same_machine else "no tolerance for this column"
                out.append(f"{job} {column}: quoted {a}, produced {b} ({why}: must be equal)")
            elif tolerance is not None and (len(numbers(a)) != len(numbers(b)) or any(
                    abs(x - y) > tolerance + 1e-9 for x, y in zip(numbers(a), numbers(b)))):
                out.append(f"{job} {column}: quoted {a}, produced {b} (beyond {tolerance} on {p['ran_on']})")
    return out


def numbers(cell: str) -> list[float]:
    """The numbers a cell shows: '0.786 [0.555, 1.000]' -> [0.786, 0.555, 1.0]; '-' -> []."""
    return [float(x) for x in re.findall(r"-?\d+\.\d+", cell)]


def quoted(name: str, page: Path = README) -> str | None:
    """The block the page quotes for sweep `name`, or None."""
    return blocks.quoted(name, page)


def write(name: str, text: str, page: Path = README) -> None:
    blocks.write(name, text, page)


def _test_images(run) -> str:
    """How many test images the job scored (its data set's logged counts)."""
    import json

    for entry in run.inputs.dataset_inputs:
        for tag in entry.tags:
            if tag.key == names.DATASET_COUNTS:
                return str(json.loads(tag.value).get("test", "?"))
    return "?"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="a sweep in sweeps/ (demo, smoke)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the sweep (e.g. trainer.repeats=3)")
    parser.add_argument("--block", help="the README block to replace (default: the sweep's name)")
    parser.add_argument("--store", type=Path, help="read this store instead of running the sweep afresh")
    parser.add_argument("--keep", type=Path, help="run the sweep in this folder and keep it (else a temporary one)")
    args = parser.parse_args(argv)
    if not (paths.SWEEPS_DIR / f"{args.sweep}.yaml").exists():
        raise SystemExit(f"no sweep {args.sweep!r} in {paths.SWEEPS_DIR}")
    name = args.block or args.sweep
    experiment = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("experiment=")), args.sweep)
    command = " ".join(["python docs/demo_results.py", args.sweep, *args.overrides,
                        *(["--block", name] if name != args.sweep else [])])
    if args.store:
        text = block(args.store.resolve(), experiment, command + f" --store {args.store}")
    elif args.keep:
        text = block(run_sweep(args.sweep, args.keep.resolve(), args.overrides), experiment, command)
    else:
        with tempfile.TemporaryDirectory(prefix=f"pneumo-{args.sweep}-") as tmp:
            text = block(run_sweep(args.sweep, Path(tmp), args.overrides), experiment, command)
    write(name, text)
    print(text)


if __name__ == "__main__":
    main()
