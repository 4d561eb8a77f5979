"""The data layer's public types (labels, the error users see, the split arrays) and one file helper."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("NORMAL", "PNEUMONIA")  # label 0, 1: the folder names of the Kaggle layout


class DataError(ValueError):
    """Data that cannot be used as given; the message names the path and the fix."""


class LeakageError(DataError):
    """A patient or a file's bytes in two splits: evaluation would be optimistic."""


@dataclass(frozen=True)
class Subset:
    x: np.ndarray  # (n, size, size, 1) uint8
    y: np.ndarray  # (n,) int64, 1 = PNEUMONIA
    patients: np.ndarray  # (n,) str: patient key, merged with any patient sharing a file's bytes
    hashes: np.ndarray  # (n,) str: sha256 hex of the file bytes
    paths: np.ndarray  # (n,) str: path relative to the data root

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Splits:
    train: Subset
    val: Subset
    test: Subset
    digest: str  # identity of the indexed data + split parameters (hex); not of image_size
    test_digest: str  # identity of the test images and labels alone (hex)
    image_size: int
    root: str  # the resolved data root
    skipped: tuple  # ((path, reason), ...): files left out, each with why
    test_source: str = ""  # the test images' folder, or "carved from train"


def write_atomic(path: Path, write) -> None:
    """write(binary file) into a temp file beside path, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
