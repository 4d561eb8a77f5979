"""How a command prints rows: a rich table on a terminal, JSON when piped, CSV on request."""

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


def write(rows: list[dict], fmt: str, *, columns: list[str], cells: Callable[[dict], list[str]],
          flat: Callable[[dict], dict] = dict, title: str | None = None, caption: str | None = None,
          out=None) -> None:
    """rows as JSON (as they are), CSV (one `flat(row)` a line) or a table (`cells(row)` under `columns`)."""
    out = out or sys.stdout
    if fmt == "json":
        json.dump(rows, out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        records = [flat(r) for r in rows]
        writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(k for r in records for k in r)))
        writer.writeheader()
        writer.writerows(records)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, caption=caption)
        for col in columns:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*cells(row))
        tty = hasattr(out, "isatty") and out.isatty()
        Console(file=out, width=None if tty else 200).print(table)  # piped: do not fold to 80 columns


def command(*args: str) -> str:
    """How to run `pneumo ARGS` as typed from the current folder, venv activated or not."""
    exe = os.path.join(os.path.dirname(sys.executable), "pneumo")
    if not os.path.exists(exe):
        return " ".join([sys.executable, "-m", "pneumo", *args])
    rel = os.path.relpath(exe)
    return " ".join([exe if rel.startswith("..") else rel, *args])
