"""The mutation-testing figures of docs/reliability.md, from the result files `mutmut run` left in mutants/.

    python docs/mutation_results.py [--print]

`make mutation` runs mutmut over pneumo/release/, pneumo/evaluation/ and pneumo/search/guard.py (the
[tool.mutmut] section of pyproject.toml), then this script. It reads each mutated file's `.meta` (mutmut's
exit code per mutant) and the runs' timings that the make target wrote (mutants/run-times.jsonl, one line per
`mutmut run`), and writes one row per module and per scope between the `results:mutation` markers of
docs/reliability.md (or prints it, with --print). A mutant is detected when a test failed on it (killed) or it
ran past its time limit (timeout: a suite that never finishes does not pass either); the kill rate is
detected / (mutants run - equivalent). A survivor listed in docs/mutants-equivalent.txt (its name, then why no
test can tell it from the original) counts as equivalent, not as survived. A module none of whose mutants
ran is named under the table, not given a row; one run only in part is a row whose `not run` column says how
many are missing.
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
TIMING = MUTANTS / "run-times.jsonl"  # written by `make mutation`: {"scope", "seconds", "children", "cpus"} a line
EQUIVALENT = ROOT / "docs" / "mutants-equivalent.txt"  # `mutant-name  why it behaves as the original` a line
SCOPES = ("pneumo/release/", "pneumo/evaluation/", "pneumo/search/guard.py")
# mutmut's exit codes (mutmut/stats.py), the ones a finished run leaves; anything else counts as `other`.
STATUS = {1: "killed", 3: "killed", 0: "survived", 33: "no tests", 5: "no tests",
          24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 36: "timeout"}
HEADER = ["| module | mutants | not run | killed | timeout | equivalent | survived | no tests | other | kill rate |",
          "|---|---|---|---|---|---|---|---|---|---|"]
COLUMNS = ("mutants", "not_run", "killed", "timeout", "equivalent", "survived", "no_tests", "other")
ROW = Row("| {module} | " + " | ".join(f"{{{k}}}" for k in COLUMNS) + " | {rate} |",
          dict.fromkeys(COLUMNS, COUNT) | {"rate": rf"{SHARE}|n/a"})


def equivalent(path: Path = EQUIVALENT) -> set[str]:
    """The mutant names docs/mutants-equivalent.txt lists (its first word a line; # starts a comment)."""
    lines = path.read_text().splitlines() if path.exists() else []
    return {line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")}


def counts(meta: Path, same: set[str] = frozenset()) -> Counter:
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return Counter("not run" if code is None else "equivalent" if STATUS.get(code) == "survived" and name in same
                   else STATUS.get(code, "other") for name, code in codes.items())


def scope_of(module: str) -> str | None:
    return next((s for s in SCOPES if module == s or (s.endswith("/") and module.startswith(s))), None)


def by_module(mutants: Path = MUTANTS, same: set[str] = frozenset()) -> dict[str, Counter]:
    """{module path: Counter of statuses} for every mutated module of the three scopes."""
    out = {}
    for meta in sorted(mutants.glob("pneumo/**/*.py.meta")):
        module = meta.relative_to(mutants).as_posix().removesuffix(".meta")
        if scope_of(module) and (c := counts(meta, same)):
            out[module] = c
    return out


def render(module: str, c: Counter) -> str:
    total, run = sum(c.values()), sum(c.values()) - c["not run"]
    detected = c["killed"] + c["timeout"]
    return ROW.render(module=module, mutants=total, not_run=c["not run"], killed=c["killed"], timeout=c["timeout"],
                      equivalent=c["equivalent"], survived=c["survived"], no_tests=c["no tests"],
                      other=run - detected - c["equivalent"] - c["survived"] - c["no tests"],
                      rate=rate(detected, run - c["equivalent"]))


def rate(detected: int, judged: int) -> str:
    """The kill rate; n/a where no mutant that ran can be told from the original (all are equivalent)."""
    return f"{100 * detected / judged:.1f}%" if judged else "n/a"


def table(modules: dict[str, Counter], timings: list[dict]) -> str:
    if not modules:
        raise SystemExit(f"no mutmut results under {MUTANTS}: run `make mutation` first")
    ran = {m: c for m, c in modules.items() if c["not run"] < sum(c.values())}
    if not ran:
        raise SystemExit(f"no mutant under {MUTANTS} was run: run `make mutation` first")
    lines = list(HEADER)
    for scope in SCOPES:
        inside = {m: c for m, c in ran.items() if scope_of(m) == scope}
        lines += [render(m, c) for m, c in inside.items() if len(inside) > 1 or m != scope]
        if inside:
            lines.append(render(f"**{scope}**", sum(inside.values(), Counter())))
    lines.append(render("**the modules run**", sum(ran.values(), Counter())))
    idle = [m for m in modules if m not in ran]
    if idle:
        lines += ["", f"Not run ({sum(sum(modules[m].values()) for m in idle):,} mutants): "
                  + ", ".join(f"`{m}`" for m in idle) + "."]
    if timings:
        each = ", ".join(f"{'the whole scope' if t.get('scope', 'all') == 'all' else '`' + t['scope'] + '`'} "
                         f"{t['seconds'] / 60:.0f} min" for t in timings)
        t = timings[0]
        lines += ["", f"Time per `mutmut run` ({t['cpus']} CPU cores, {t['children']} mutants at a time, niced): {each}; "
                  f"{sum(t['seconds'] for t in timings) / 60:.0f} min in all."]
    return "\n".join(lines)


def parse(text: str) -> list[tuple[str, dict[str, str]]]:
    return blocks.parse_rows(text, HEADER, {"module": ROW})


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--print", action="store_true", help="print the table, write nothing")
    p.add_argument("--mutants", type=Path, default=MUTANTS, help="mutmut's folder (default: mutants/ of this checkout)")
    args = p.parse_args(argv)
    timing = args.mutants / TIMING.name
    timings = [json.loads(line) for line in timing.read_text().splitlines() if line.strip()] if timing.exists() else []
    text = table(by_module(args.mutants, equivalent()), timings)
    if not args.print:
        blocks.write(BLOCK, text, PAGE)
    print(text)


if __name__ == "__main__":
    main()
