"""Shared fixtures: tiny data only (tens of images, 32-64 px), nothing from the network."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from pneumo.config.schema import DataConfig


def pytest_configure(config):
    """Ctrl-C reaches every process the tests start as it does from a terminal. A test run started in the
    background (`make test &`, nohup) ignores SIGINT, and an ignored signal stays ignored across fork and
    exec, so the zygote, every job it forks and every `pneumo` script would ignore it too, and the Ctrl-C
    tests would wait for ever; a handled one is reset to its default at exec (each pytest-xdist worker
    loads this file too)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _environment_restored():
    """One test's environment never becomes the next one's: the whole of os.environ is put back.

    `mlflow.set_tracking_uri` also writes MLFLOW_TRACKING_URI into os.environ, where
    `pneumo.record.store.setup` reads it as the user's choice: a test that pointed MLflow at a
    server it has since stopped would send every later test of the process there.
    `backend.choose()` writes KERAS_BACKEND, which every child pneumo inherits: a
    smoke sweep after it would run on JAX. And any variable left behind (the determinism
    setup's CUBLAS_WORKSPACE_CONFIG, a sweep's job count) makes every later child differ
    from the test zygote's environment, so each one paid for a new interpreter (CI, 2026-12-07).
    """
    before = dict(os.environ)
    yield
    if "mlflow" in sys.modules and os.environ.get("MLFLOW_TRACKING_URI") != before.get("MLFLOW_TRACKING_URI"):
        sys.modules["mlflow"].set_tracking_uri(None)  # also forgets it in mlflow's own global
    for k in os.environ.keys() - before.keys():
        del os.environ[k]
    os.environ.update(before)


@pytest.fixture(scope="session", autouse=True)
def _checkout_left_clean():
    """No test leaves a store or Hydra's output in the checkout: MLflow's default URI is sqlite:///mlflow.db
    in the working directory, Hydra's outputs/ and multirun/ too (a stray mlflow.db once reached a commit)."""
    root = Path(__file__).resolve().parent.parent
    stray = lambda: {p.name for p in root.iterdir() if p.suffix == ".db" or p.name in ("outputs", "multirun", "mlartifacts")}  # noqa: E731
    before = stray()
    yield
    assert stray() <= before, f"a test left {sorted(stray() - before)} in {root}: point it at its tmp_path"


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
    _fastest_first_for_a_mutant(items)


def _fastest_first_for_a_mutant(items):
    """Under `make mutation` (mutmut sets MUTANT_UNDER_TEST and runs from mutants/, beside its stats) the tests
    of a mutant run fastest first, by their measured time: mutmut stops at the first failure, so a mutant
    a quick decision test kills never waits for a slow registry test."""
    stats = Path("mutmut-stats.json")
    if not os.environ.get("MUTANT_UNDER_TEST") or not stats.is_file():
        return
    seconds = json.loads(stats.read_text()).get("duration_by_test", {})
    items.sort(key=lambda item: seconds.get(item.nodeid, float("inf")))


def pytest_report_header(config):
    """Which Keras backends this run promises: in CI, those .ci/run installs (PNEUMO_BACKENDS)."""
    from helpers import KERAS_BACKENDS, PROMISED, backends

    promised = backends(*KERAS_BACKENDS)
    left_out = [b for b in KERAS_BACKENDS if b not in promised]
    return f"Keras backends: {' '.join(promised)}" + (f" (not run: {' '.join(left_out)}, by {PROMISED})" if left_out else "")
