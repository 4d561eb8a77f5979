"""Write the README's quoted sweep results from what the code produces now, never by hand.

    python docs/demo_results.py demo     # `pneumo sweep demo` in a fresh folder, as `make demo` in a fresh clone
    python docs/demo_results.py smoke    # the smoke sweep: the block tests/test_readme_results.py checks
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
sys.path.insert(0, str(ROOT))

from pneumo.record import names as M
from pneumo.config import paths

README = ROOT / "README.md"
COLUMNS = ("job", M.VAL_AUC, "test_auc [95% CI]", M.TEST_SENSITIVITY, M.TEST_SPECIFICITY, M.THRESHOLD)


def run_sweep(name: str, folder: Path, overrides: list[str] = ()) -> Path:
    """`pneumo sweep NAME [overrides]` with its cache, store and outputs in `folder`; returns the store."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # the fresh store, not yours
    cmd = [sys.executable, "-m", "pneumo", "sweep", name, *overrides, f"paths.cache={folder}/cache",
           f"tracking.store={folder}/mlruns", f"hydra.sweep.dir={folder}/multirun"]
    subprocess.run(cmd, cwd=folder, env={**env, "PYTHONPATH": str(ROOT)}, check=True)
    return folder / "mlruns"


def block(store: Path, experiment: str, command: str) -> str:
    """The README block: a markdown leaderboard of the experiment's finished jobs (reruns left out)."""
    from pneumo.commands import leaderboard
    from pneumo.record import runs, store

    client = store.connect(store=store)
    rows = [r for r in leaderboard.leaderboard(experiment, M.VAL_AUC, client=client)
            if r["status"] == "FINISHED" and not r["rerun_of"]]
    if not rows:
        raise SystemExit(f"no finished jobs in experiment {experiment!r} of {store}")
    seeded = any(r["seeds"] for r in rows)
    columns = [*COLUMNS, *(["test_auc over seeds (mean ± sd)", "val_auc over seeds"] if seeded else [])]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        ci = f"{_f(r[M.TEST_AUC])} [{_f(r[M.TEST_AUC + '_ci_low'])}, {_f(r[M.TEST_AUC + '_ci_high'])}]"
        cells = [r["run_name"], _f(r[M.VAL_AUC]), ci, _f(r[M.TEST_SENSITIVITY]), _f(r[M.TEST_SPECIFICITY]),
                 _f(r[M.THRESHOLD])]
        if seeded:
            seeds, n = r["seeds"] or {}, int(r[M.SEED_REPEATS] or 0)
            cells += [f"{_f(seeds[m]['mean'])} ± {_f(seeds[m]['sd'])} ({n} seeds)" if m in seeds else "-"
                      for m in (M.TEST_AUC, M.VAL_AUC)]
        lines.append("| " + " | ".join(cells) + " |")
    run = client.get_run(rows[0]["run_id"])
    tags, backend = run.data.tags, run.data.tags.get("keras.backend", "?")
    ran_on = (f"Keras {tags.get('keras.version', '?')} on {backend} {tags.get(f'{backend}.version', '?')}, "
              f"{tags.get(M.TAG_DEVICE, 'device not recorded')}, {_test_images(run)} test images")
    lines += ["", f"Written by `{command}` ({ran_on})."]
    return "\n".join(lines)


def table(text: str) -> list[str]:
    """The table rows of a block: what a test compares (the line of versions says where they came from)."""
    return [line for line in text.splitlines() if line.startswith("|")]


def ran_on(text: str) -> str:
    """What a block's numbers were computed with: Keras, backend, device (the `Written by` line's parenthesis),
    less the test-image count."""
    found = re.search(r"^Written by `[^`]*` \((?P<what>.*)\)\.$", text, re.M)
    return found.group("what").rsplit(", ", 1)[0] if found else "an unrecorded machine"


def quoted(name: str, readme: Path = README) -> str | None:
    """The block the README quotes for sweep `name`, or None."""
    found = _pattern(name).search(readme.read_text())
    return found.group("body").strip() if found else None


def write(name: str, text: str, readme: Path = README) -> None:
    source = readme.read_text()
    if not _pattern(name).search(source):
        raise SystemExit(f"{readme} has no <!-- results:{name} --> ... <!-- /results:{name} --> block")
    readme.write_text(_pattern(name).sub(lambda m: f"{m.group('open')}\n\n{text}\n\n{m.group('close')}", source))


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(?P<open><!-- results:{re.escape(name)}\b[^>]*-->)(?P<body>.*?)(?P<close><!-- /results:"
                      rf"{re.escape(name)} -->)", re.S)


def _test_images(run) -> str:
    """How many test images the job scored (its data set's logged counts)."""
    import json

    for entry in run.inputs.dataset_inputs:
        for tag in entry.tags:
            if tag.key == "counts":
                return str(json.loads(tag.value).get("test", "?"))
    return "?"


def _f(value) -> str:
    return "-" if value is None else f"{value:.3f}"


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
