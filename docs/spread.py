"""How far a sweep's quoted numbers move with the CPU, the Keras backend and the seed: the measurement behind
each tolerance in docs/demo_results.py `TOLERANCES`, written into docs/results.md, never typed by hand.

    python docs/spread.py smoke                   # 6 smoke sweeps (~1 min each on an idle 2-core CPU)
    python docs/spread.py smoke --keep /tmp/spread  # keep the stores; a second call reads what is there
    python docs/spread.py demo --variants avx2    # 2 demo sweeps (~3.5 min each): as quoted, another CPU

Runs the sweep as it is quoted, then again with one thing changed at a time:
  - another CPU: oneDNN (TensorFlow's CPU kernels) capped at AVX2 or at SSE4.1 (ONEDNN_MAX_CPU_ISA), the
    kernels an older host runs, or TensorFlow's own kernels without oneDNN: the same code and seed, floats
    added in another order. A tolerance must cover these (MACHINE);
  - another backend: KERAS_BACKEND=jax, other kernels and another random stream: what a library release
    that changes initialisation does. No tolerance covers it: a table quoted from other versions is
    written again (`python docs/demo_results.py NAME`), not excused;
  - another seed: seed=43, the training noise the quoted seed fixes, for scale.
Each is the table docs/demo_results.py writes, compared cell by cell with the first (`numbers`): the
largest absolute difference over jobs and numbers of a column, per change. So is the table docs/results.md
quotes, when another machine line wrote it (a real other CPU, or other library versions). The block it
writes is `results:NAME-spread`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_results

# (folder, label in the table, extra environment, extra overrides): one change at a time against the first.
VARIANTS = (
    ("as-quoted", "as quoted", {}, []),
    ("avx2", "another CPU (oneDNN capped at AVX2)", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, []),
    ("sse41", "another CPU (oneDNN capped at SSE4.1)", {"ONEDNN_MAX_CPU_ISA": "SSE41"}, []),
    ("onednn-off", "another CPU's kernels (TensorFlow without oneDNN)", {"TF_ENABLE_ONEDNN_OPTS": "0"}, []),
    ("jax", "another backend (JAX)", {"KERAS_BACKEND": "jax"}, []),
    ("seed-43", "another seed (seed=43)", {}, ["seed=43"]),
)
MACHINE = ("another CPU", "the quoted table")  # the same code on other kernels: what a tolerance must cover
ANY_TWO = "any two of these CPUs"


def tables(sweep: str, folder: Path, variants: list[str] | None = None) -> dict[str, dict]:
    """{variant label: parsed table} of the sweep run once per variant under `folder` (kept runs reused),
    then the quoted table's when another machine line wrote it. A job is named as in the quoted table
    (a variant's own overrides left out of its name)."""
    out = {}
    for slug, label, env, overrides in VARIANTS:
        if variants is not None and slug not in variants and slug != VARIANTS[0][0]:
            continue
        store = folder / slug / "mlruns"
        if not (store / "mlflow.db").exists():
            demo_results.run_sweep(sweep, folder / slug, overrides, env)
        table = demo_results.parse(demo_results.block(store, sweep, f"python docs/spread.py {sweep}"))
        table["rows"] = {" ".join(t for t in job.split() if t not in overrides): cells
                         for job, cells in table["rows"].items()}
        out[label] = table
    quoted = demo_results.parse(demo_results.quoted(sweep))
    if quoted["ran_on"] != out[VARIANTS[0][1]]["ran_on"]:
        out[f"the quoted table ({quoted['ran_on'].split(', ', 1)[-1]})"] = quoted
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
    """The spread table: each change against the run as quoted, then any two CPUs against each other (the
    run as quoted, the CPU changes and the quoted table's own host: the guard compares the quoted table with
    a run on any of them), then the tolerance."""
    base_label, *others = list(measured)
    base = measured[base_label]
    spreads = {label: spread(base, measured[label]) for label in others}
    cpus = [base_label, *(label for label in others if label.startswith(MACHINE))]
    spreads[ANY_TWO] = {column: max((spread(measured[a], measured[b])[column] for a, b in combinations(cpus, 2)),
                                    default=float("nan")) for column in base["columns"][1:]}
    shown = [*others, ANY_TWO]
    lines = ["| column | " + " | ".join(shown) + " | tolerance (docs/demo_results.py) |",
             "|---|" + "---:|" * (len(shown) + 1)]
    for column in base["columns"][1:]:
        tolerance = demo_results.TOLERANCES.get(sweep, {}).get(column)
        lines.append(f"| {column} | " + " | ".join(f"{spreads[label][column]:.3f}" for label in shown)
                     + f" | {'-' if tolerance is None else f'{tolerance:.3f}'} |")
    lines += ["", f"Written by `{command}` ({base['ran_on']}, {base['images']} test images): the largest absolute "
              f"difference from the run as quoted (or between {ANY_TWO}) over the {len(base['rows'])} jobs and "
              f"each number of a column."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="a sweep in sweeps/ (smoke; demo takes ~4x 3.5 min)")
    parser.add_argument("--keep", type=Path, help="run the sweeps in this folder and keep them")
    parser.add_argument("--variants", nargs="+", choices=[v[0] for v in VARIANTS[1:]],
                        help="which changes to run (default: all)")
    args = parser.parse_args(argv)
    command = " ".join([f"python docs/spread.py {args.sweep}",
                        *(["--variants", *args.variants] if args.variants else [])])
    if args.keep:
        text = block(args.sweep, tables(args.sweep, args.keep.resolve(), args.variants), command)
    else:
        with tempfile.TemporaryDirectory(prefix=f"pneumo-spread-{args.sweep}-") as tmp:
            text = block(args.sweep, tables(args.sweep, Path(tmp), args.variants), command)
    demo_results.write(f"{args.sweep}-spread", text)
    print(text)


if __name__ == "__main__":
    main()
