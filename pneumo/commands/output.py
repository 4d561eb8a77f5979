"""How a command prints rows: a rich table on a terminal, JSON when piped, CSV on request.

A table asked for off a terminal (a log file, a pipe) is a Markdown table, one line per row with its
columns padded to one width: rich would fold it to the width it guesses, breaking every column name
(`eters`, `tivity`) and spreading each row over many lines."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable

FORMATS = ("table", "csv", "json")


def choose(fmt: str | None, out=None) -> str:
    """The format asked for, else a table for a person at a terminal and JSON for a program."""
    out = out or sys.stdout
    return fmt or ("table" if hasattr(out, "isatty") and out.isatty() else "json")


def write(rows: list, fmt: str, *, columns: list[str], cells: Callable[[object], list[str]],
          record: Callable[[object], dict] = dict, flat: Callable[[object], dict] | None = None,
          title: str | None = None, caption: str | None = None, out=None) -> None:
    """rows as JSON (one `record(row)` each), CSV (one `flat(row)` a line; default: the record) or a table
    (`cells(row)` under `columns`)."""
    out = out or sys.stdout
    if fmt == "json":
        json.dump([record(r) for r in rows], out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        records = [(flat or record)(r) for r in rows]
        writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(k for r in records for k in r)))
        writer.writeheader()
        writer.writerows(records)
    elif not (hasattr(out, "isatty") and out.isatty()):
        markdown(columns, [cells(r) for r in rows], title=title, caption=caption, out=out)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, caption=caption)
        for col in columns:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*cells(row))
        Console(file=out).print(table)


def markdown(columns: list[str], body: list[list[str]], *, title: str | None = None, caption: str | None = None,
             out=None) -> None:
    """A Markdown table padded to fixed widths: a cell's lines joined by spaces, so each row is one line."""
    out = out or sys.stdout
    cell = lambda text: " ".join(str(text).split("\n")).replace("|", "\\|")  # noqa: E731
    head, body = [cell(c) for c in columns], [[cell(c) for c in row] for row in body]
    widths = [max(map(len, column)) for column in zip(head, *body)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    if title:
        out.write(f"{title}\n\n")
    out.write("\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)]) + "\n")
    if caption:
        out.write(f"\n{caption}\n")


def command(*args: str) -> str:
    """How to run `pneumo ARGS` as typed from the current folder, venv activated or not."""
    exe = os.path.join(os.path.dirname(sys.executable), "pneumo")
    if not os.path.exists(exe):
        return " ".join([sys.executable, "-m", "pneumo", *args])
    rel = os.path.relpath(exe)
    return " ".join([exe if rel.startswith("..") else rel, *args])
