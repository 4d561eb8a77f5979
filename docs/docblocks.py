"""The generated blocks of the README and docs/: where a script writes a table, and how a test finds it.

A block sits between two comments, the first naming the command that writes it:

    <!-- results:NAME (written by `python docs/SCRIPT.py ...`; ...) -->
    ...the table, as the script printed it...
    <!-- /results:NAME -->

A table of timings, which no test can rerun and which is often assembled from several runs of a
benchmark, sits between `<!-- measured:NAME (measured by `COMMAND`; ...) -->` and `<!-- /measured:NAME -->`
instead: it names its command too, and no script writes it.

`write` replaces a block's body (the page must already hold the two comments: a new table is placed by
hand once, then only ever written). `Row` is one line of a table as a template, rendered by the script
and parsed back by the tests, so a quoted table whose numbers cannot be regenerated here (its store is
on another machine) is still checked to be in the form the script writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md")
OPENING = re.compile(r"<!-- (?P<kind>results|measured):(?P<name>[\w.-]+) \((?:written|measured) by `(?P<command>[^`]+)`"
                     r"(?P<rest>[^>]*)\) -->")


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(?P<open><!-- results:{re.escape(name)} [^>]*-->)(?P<body>.*?)(?P<close><!-- /results:"
                      rf"{re.escape(name)} -->)", re.S)


def quoted(name: str, page: Path) -> str | None:
    """The body of block `name` in `page`, stripped, or None."""
    found = _pattern(name).search(page.read_text())
    return found.group("body").strip() if found else None


def write(name: str, text: str, page: Path) -> None:
    source = page.read_text()
    if not _pattern(name).search(source):
        raise SystemExit(f"{page} has no <!-- results:{name} (written by `...`) --> ... <!-- /results:{name} --> block")
    page.write_text(_pattern(name).sub(lambda m: f"{m.group('open')}\n\n{text}\n\n{m.group('close')}", source))


@dataclass(frozen=True)
class Block:
    page: Path
    kind: str  # results (a script writes it) or measured (timings, typed from a benchmark's output)
    name: str
    command: str  # what writes or measured it, from the checkout root
    body: str
    start: int  # line numbers (1-based) of its two comments in the page
    end: int


def blocks(page: Path) -> list[Block]:
    """Every generated block of a page, in order."""
    text, out = page.read_text(), []
    for m in OPENING.finditer(text):
        close = text.find(f"<!-- /{m['kind']}:{m['name']} -->", m.end())
        if close < 0:
            raise ValueError(f"{page.name}: <!-- {m['kind']}:{m['name']} --> is never closed")
        out.append(Block(page, m["kind"], m["name"], m["command"], text[m.end():close].strip(),
                         text.count("\n", 0, m.start()) + 1, text.count("\n", 0, close) + 1))
    return out


def table(text: str) -> list[str]:
    """The table lines of a block (what a test compares; the prose around it says where they came from)."""
    return [line for line in text.splitlines() if line.startswith("|")]


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


# What a field of a row may hold, by the shape the scripts write it in (pneumo.evaluation.format).
NUMBER = r"-?\d+\.\d+"
INTERVAL = rf"{NUMBER} \[{NUMBER}, {NUMBER}\]"  # format.metric: a value and its CI
CI = rf"\[{NUMBER}, {NUMBER}\]"
COUNT = r"\d+"
SHARE = r"\d+\.\d%"


@dataclass(frozen=True)
class Row:
    """One table line as a template: `{name}` fields are rendered from a dict and parsed back from text;
    `fields` says what a field may hold (a regex; any text where not given)."""

    template: str
    fields: dict = field(default_factory=dict)

    def render(self, **values) -> str:
        return self.template.format(**values)

    def parse(self, line: str) -> dict[str, str] | None:
        """The fields of `line` if it is this row in the form `render` writes, else None."""
        parts, seen, regex = re.split(r"\{(\w+)\}", self.template), set(), ""
        for i, p in enumerate(parts):
            regex += re.escape(p) if i % 2 == 0 else f"(?P={p})" if p in seen else f"(?P<{p}>{self.fields.get(p, '.*?')})"
            seen.add(p)
        found = re.fullmatch(regex, line.strip())
        return found.groupdict() if found else None


def parse_rows(text: str, header: list[str], rows: dict[str, Row]) -> list[tuple[str, dict[str, str]]]:
    """[(row key, its fields)] of a block written with `header` (its lines) and `rows`, in order; raises
    ValueError on another header or a line that none of the rows writes."""
    lines = table(text)
    if lines[: len(header)] != header:
        raise ValueError(f"the table's header is {lines[:len(header)]}, the script writes {header}")
    out = []
    for line in lines[len(header):]:
        found = next(((k, f) for k, r in rows.items() if (f := r.parse(line)) is not None), None)
        if found is None:
            raise ValueError(f"a line the script does not write: {line}")
        out.append(found)
    return out
