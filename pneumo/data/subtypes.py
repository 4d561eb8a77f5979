"""Pneumonia subtypes from Kermany's file names: personN_bacteria_M / personN_virus_M.

The subtype is part of the patient key (pneumo.data.index.patient_id), so it is read from
there; any other name (NORMAL films, other collections) has no subtype.
"""

from __future__ import annotations

from pathlib import Path

from pneumo.data.index import patient_id

SUBTYPES = ("bacteria", "virus")  # Kermany's two; the order reports use


def subtype(path: str) -> str | None:
    """'bacteria', 'virus', or None when the file name does not say."""
    key = patient_id(Path(str(path)).name)
    if not key.startswith("person"):
        return None
    kind = key.rsplit("_", 1)[-1]
    return kind if kind in SUBTYPES else None
