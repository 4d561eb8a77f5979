"""How far a sweep's quoted numbers move with the CPU, the Keras backend and the seed: the measurement behind
each tolerance in docs/demo_results.py `TOLERANCES`, written into docs/results.md, never typed by hand.

    python docs/spread.py smoke                   # 4 smoke sweeps (~1 min each on an idle 2-core CPU)
    python docs/spread.py smoke --keep /tmp/spread  # keep the stores; a second call reads what is there
    python docs/spread.py demo --variants 0 1     # 2 demo sweeps (~3.5 min each): as quoted, another CPU

Runs the sweep as it is quoted, then again with one thing changed at a time:
  - another CPU: oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA), the kernels an AVX2-only host runs;
    the job's device tag does not change, so the guard sees the same machine line: the spread of a
    CPU that reports itself the same is what this row measures;
  - another backend: KERAS_BACKEND=jax, the same Keras on other kernels and another random stream
    (what a library release that changes initialisation or kernels does);
  - another seed: seed=43, the training noise the quoted seed fixes.
Each is the table docs/demo_results.py writes, compared cell by cell with the first (`numbers`): the
largest absolute difference over jobs and numbers of a column, per change. So is the table docs/results.md
quotes, when another machine line wrote it (a real other CPU, or other library versions). The block it
writes is `results:NAME-spread`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_results

# (label in the table, extra environment, extra overrides): one change at a time against the first.
VARIANTS = (
    ("as quoted", {}, []),
    ("another CPU (oneDNN capped at AVX2)", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, []),
    ("another backend (JAX)", {"KERAS_BACKEND": "jax"}, []),
    ("another seed (seed=43)", {}, ["seed=43"]),
)


def tables(sweep: str, folder: Path, variants: list[int] | None = None) -> dict[str, dict]:
    """{variant label: parsed table} of the sweep run once per variant under `folder` (kept runs reused),
    then the quoted table's when another machine line wrote it."""
    out = {}
    for i, (label, env, overrides) in enumerate(VARIANTS):
        if variants is not None and i not in variants and i != 0:
            continue
        run = folder / f"variant-{i}"
        store = run / "mlruns"
        if not (store / "mlflow.db").exists():
            demo_results.run_sweep(sweep, run, overrides, env)
        out[label] = demo_results.parse(demo_results.block(store, sweep, f"python docs/spread.py {sweep}"))
    quoted = demo_results.parse(demo_results.quoted(sweep))
    if quoted["ran_on"] != out[VARIANTS[0][0]]["ran_on"]:
        out[f"the quoted table ({quoted['ran_on']})"] = quoted
    return out


def spread(base: dict, other: dict) -> dict[str, float]:
    """{column: largest |difference| of its numbers over the jobs both tables hold}."""
    out = {}
    for column in base["columns"][1:]:
        i = base["columns"].index(column) - 1
        diffs = [abs(x - y) for job in set(base["rows"]) & set(other["rows"])
                 for x, y in zip(demo_results.numbers(base["rows"][job][i]),
                                 demo_results.numbers(other["rows"][job][i]))]
        out[column] = max(diffs, default=float("nan"))
    return out


def block(sweep: str, measured: dict[str, dict], command: str) -> str:
    base_label, *others = list(measured)
    base = measured[base_label]
    spreads = {label: spread(base, measured[label]) for label in others}
    lines = ["| column | " + " | ".join(others) + " | tolerance (docs/demo_results.py) |",
             "|---|" + "---:|" * (len(others) + 1)]
    for column in base["columns"][1:]:
        tolerance = demo_results.TOLERANCES.get(sweep, {}).get(column)
        lines.append(f"| {column} | " + " | ".join(f"{spreads[label][column]:.3f}" for label in others)
                     + f" | {'-' if tolerance is None else f'{tolerance:.3f}'} |")
    lines += ["", f"Written by `{command}` ({base['ran_on']}, {base['images']} test images): the largest absolute "
              f"difference from the quoted run over the {len(base['rows'])} jobs and each number of a column."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="a sweep in sweeps/ (smoke; demo takes ~4x 3.5 min)")
    parser.add_argument("--keep", type=Path, help="run the sweeps in this folder and keep them")
    parser.add_argument("--variants", type=int, nargs="+", help="which changes to run (indices of VARIANTS; default all)")
    args = parser.parse_args(argv)
    command = " ".join([f"python docs/spread.py {args.sweep}",
                        *(["--variants", *map(str, args.variants)] if args.variants else [])])
    if args.keep:
        text = block(args.sweep, tables(args.sweep, args.keep.resolve(), args.variants), command)
    else:
        with tempfile.TemporaryDirectory(prefix=f"pneumo-spread-{args.sweep}-") as tmp:
            text = block(args.sweep, tables(args.sweep, Path(tmp), args.variants), command)
    demo_results.write(f"{args.sweep}-spread", text)
    print(text)


if __name__ == "__main__":
    main()
