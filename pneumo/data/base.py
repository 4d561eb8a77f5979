"""The data layer's public types: labels, the error users see, and the split arrays."""

from __future__ import annotations

from dataclasses import dataclass

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
