"""Predictions as CSV: one writer (the csv module, so a path holding a comma or a quote stays one
field) and its reader, for the job's test predictions and an evaluation run's."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from pneumo.record import names


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


def read_job(path) -> list[tuple[str, str, int, float]]:
    """A job's predictions (PREDICTIONS_ARTIFACT): (hash, patient, label, probability) rows, sorted, so that
    two jobs' rows align by (hash, patient): duplicate images (same bytes) score alike."""
    hash_, patient, y_true, probability = names.PREDICTION_COLUMNS
    return sorted((r[hash_], r[patient], int(float(r[y_true])), float(r[probability])) for r in read(path))
