"""The mutation-testing figures of docs/reliability.md, from the result files `mutmut run` left in mutants/.

    python docs/mutation_results.py [--print]

`make mutation` runs mutmut over pneumo/release/, pneumo/evaluation/ and pneumo/search/guard.py (the
[tool.mutmut] section of pyproject.toml), then this script. It reads each mutated file's `.meta` (mutmut's
exit code per mutant) and the run's timing that the make target wrote (mutants/run-time.json), and writes
one row per module and per scope between the `results:mutation` markers of docs/reliability.md (or prints
it, with --print). A mutant is detected when a test failed on it (killed) or it ran past its time limit
(timeout: a suite that never finishes does not pass either); the kill rate is detected / mutants.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "docs")]

import docblocks as blocks  # noqa: E402 -- docs/docblocks.py, beside this file
from docblocks import COUNT, SHARE, Row  # noqa: E402

PAGE = ROOT / "docs" / "reliability.md"
BLOCK = "mutation"
MUTANTS = ROOT / "mutants"
TIMING = MUTANTS / "run-time.json"  # written by `make mutation`: {"seconds", "children", "cpus"}
SCOPES = ("pneumo/release/", "pneumo/evaluation/", "pneumo/search/guard.py")
# mutmut's exit codes (mutmut/stats.py), the ones a finished run leaves; anything else counts as `other`.
STATUS = {1: "killed", 3: "killed", 0: "survived", 33: "no tests", 5: "no tests",
          24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 36: "timeout"}
HEADER = ["| module | mutants | killed | timeout | survived | no tests | other | kill rate |",
          "|---|---|---|---|---|---|---|---|"]
ROW = Row("| {module} | {mutants} | {killed} | {timeout} | {survived} | {no_tests} | {other} | {rate} |",
          {k: COUNT for k in ("mutants", "killed", "timeout", "survived", "no_tests", "other")} | {"rate": SHARE})


def counts(meta: Path) -> Counter:
    codes = json.loads(meta.read_text())["exit_code_by_key"].values()
    return Counter(STATUS.get(code, "other") if code is not None else "not run" for code in codes)


def scope_of(module: str) -> str | None:
    return next((s for s in SCOPES if module == s or (s.endswith("/") and module.startswith(s))), None)


def by_module(mutants: Path = MUTANTS) -> dict[str, Counter]:
    """{module path: Counter of statuses} for every mutated module of the three scopes."""
    out = {}
    for meta in sorted(mutants.glob("pneumo/**/*.py.meta")):
        module = meta.relative_to(mutants).as_posix().removesuffix(".meta")
        if scope_of(module) and (c := counts(meta)):
            out[module] = c
    return out


def render(module: str, c: Counter) -> str:
    total = sum(c.values())
    detected = c["killed"] + c["timeout"]
    return ROW.render(module=module, mutants=total, killed=c["killed"], timeout=c["timeout"], survived=c["survived"],
                      no_tests=c["no tests"], other=total - detected - c["survived"] - c["no tests"],
                      rate=f"{100 * detected / total:.1f}%")


def table(modules: dict[str, Counter], timing: dict | None) -> str:
    if not modules:
        raise SystemExit(f"no mutmut results under {MUTANTS}: run `make mutation` first")
    not_run = sum(c["not run"] for c in modules.values())
    if not_run:
        raise SystemExit(f"{not_run} mutants were never run (an interrupted `mutmut run`?): run `make mutation` again")
    lines = list(HEADER)
    for scope in SCOPES:
        inside = {m: c for m, c in modules.items() if scope_of(m) == scope}
        if len(inside) > 1:
            lines += [render(m, c) for m, c in inside.items()]
        lines.append(render(f"**{scope}**", sum(inside.values(), Counter())))
    lines.append(render("**all three**", sum(modules.values(), Counter())))
    if timing:
        lines += ["", f"One run of `make mutation` took {timing['seconds'] / 60:.0f} min on {timing['cpus']} CPU cores "
                  f"({timing['children']} mutants at a time, under `nice -n 19`)."]
    return "\n".join(lines)


def parse(text: str) -> list[tuple[str, dict[str, str]]]:
    return blocks.parse_rows(text, HEADER, {"module": ROW})


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--print", action="store_true", help="print the table, write nothing")
    args = p.parse_args(argv)
    timing = json.loads(TIMING.read_text()) if TIMING.exists() else None
    text = table(by_module(), timing)
    if not args.print:
        blocks.write(BLOCK, text, PAGE)
    print(text)


if __name__ == "__main__":
    main()
