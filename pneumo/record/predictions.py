"""Predictions as CSV: one writer (the csv module, so a path holding a comma or a quote stays one
field) and its reader, for the job's test predictions and an evaluation run's."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence


def to_csv(columns: Sequence[str], rows: Iterable[Sequence]) -> str:
    """The CSV text of `rows` under a header of `columns`; probabilities as given (round them first)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


def read(path) -> list[dict[str, str]]:
    """The rows of a CSV written by `to_csv`, as dicts by column."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
