"""Shared fixtures: tiny data only (tens of images, 32-64 px), nothing from the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from pneumo.schema import DataConfig


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A 60-image synthetic set (48 px) in the Kaggle layout, generated once per session."""
    from pneumo.data import synthetic

    return synthetic.generate(tmp_path_factory.mktemp("data") / "synthetic", n_images=60, image_px=48, seed=1)


@pytest.fixture
def data_cfg(tmp_path):
    """DataConfig factory with its cache in tmp_path: data_cfg(source="folder", root=...)."""

    def make(**overrides) -> DataConfig:
        return DataConfig(**{"source": "synthetic", "cache_dir": str(tmp_path / "cache"), **overrides})

    return make
