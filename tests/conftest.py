"""Shared fixtures: tiny data only (tens of images, 32-64 px), nothing from the network."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pneumo.config.schema import DataConfig


@pytest.fixture(autouse=True)
def _environment_restored():
    """One test's MLflow store or Keras backend never becomes the next one's.

    `mlflow.set_tracking_uri` also writes MLFLOW_TRACKING_URI into os.environ, where
    `pneumo.record.store.setup` reads it as the user's choice: a test that pointed MLflow at a
    server it has since stopped would send every later test of the process there.
    `backend.choose()` writes KERAS_BACKEND, which every child pneumo inherits: a
    smoke sweep after it would run on JAX. Both are put back after each test.
    """
    watched = lambda: {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_") or k == "KERAS_BACKEND"}  # noqa: E731
    before = watched()
    yield
    if "mlflow" in sys.modules and os.environ.get("MLFLOW_TRACKING_URI") != before.get("MLFLOW_TRACKING_URI"):
        sys.modules["mlflow"].set_tracking_uri(None)  # also forgets it in mlflow's own global
    for k in watched().keys() - before.keys():
        del os.environ[k]
    os.environ.update(before)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A 60-image synthetic set (48 px) in the Kaggle layout, generated once per session."""
    from pneumo.data import synthetic

    return synthetic.generate(tmp_path_factory.mktemp("data") / "synthetic", n_images=60, image_px=48, seed=1)


@pytest.fixture
def data_cfg(tmp_path):
    """DataConfig factory with its cache in tmp_path: data_cfg(source="folder", root=...)."""

    def make(**overrides):
        from omegaconf import OmegaConf

        from pneumo.config import defaults

        return OmegaConf.merge(OmegaConf.structured(DataConfig), defaults.option("data", "synthetic"),
                               {"cache_dir": str(tmp_path / "cache"), **overrides})

    return make


def pytest_collection_modifyitems(config, items):
    """Slow tests are handed out first (`make test`: xdist's `--dist load`), so the run does not end
    waiting on one long test alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order within each


def pytest_report_header(config):
    """Which Keras backends this run promises: in CI, those .ci/run installs (PNEUMO_BACKENDS)."""
    from helpers import KERAS_BACKENDS, PROMISED, backends

    promised = backends(*KERAS_BACKENDS)
    left_out = [b for b in KERAS_BACKENDS if b not in promised]
    return f"Keras backends: {' '.join(promised)}" + (f" (not run: {' '.join(left_out)}, by {PROMISED})" if left_out else "")
