"""Model and training code are Keras 3 only: the smoke sweep also runs on the JAX backend,
and what a job records (tags, the logged model's requirements) names the backend it ran on."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pneumo.record import names
from pneumo.runtime import backend

import helpers
from helpers import TOY, backends, client_for, require_backend, run_pneumo


@pytest.mark.slow
def test_smoke_sweep_on_jax_with_augment_in_the_compiled_step(tmp_path):
    """The smoke sweep's two jobs (cnn, resnet) at toy size on JAX, with the `light` augmentation
    (pneumo's Augment layer inside JAX's compiled train step).

    PNEUMO_JAX_VENV (set by .ci/run): a venv with pneumo's `jax` extra alone, where TensorFlow must not
    be importable; the sweep runs there as `python -m pneumo`, KERAS_BACKEND
    unset (pneumo picks the installed backend), through that venv's `pneumo` script. Without it: this venv,
    KERAS_BACKEND=jax."""
    venv = os.environ.get("PNEUMO_JAX_VENV")
    argv = ["sweep", "smoke", *TOY, "augmentation=light"]
    if venv:
        python = str(Path(venv) / "bin" / "python")
        tf = subprocess.run([python, "-c", "import tensorflow"], capture_output=True)
        assert tf.returncode != 0, f"tensorflow is importable in {venv}: something depends on it again"
        run_pneumo(argv, tmp_path, env_extra={"KERAS_BACKEND": None}, python=python)
    else:
        require_backend("jax")  # the dev extra brings it
        run_pneumo(argv, tmp_path, env_extra={"KERAS_BACKEND": "jax"})
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("smoke")
    jobs = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'")
    assert len(jobs) == 2 and {j.info.status for j in jobs} == {"FINISHED"}
    assert {j.data.tags[names.TAG_KERAS_BACKEND] for j in jobs} == {"jax"}
    assert all(j.data.tags.get("jax.version") and j.data.tags.get("jaxlib.version") for j in jobs)
    assert all(float(j.data.params["augmentation.rotation"]) > 0 for j in jobs), "the light augmentation did not run"
    versions = client.search_model_versions(f"name='{names.MODEL_NAME}'")
    assert len(versions) == 2
    # Served in a fresh environment, the model must get a backend to run on: jax + jaxlib, pinned.
    import mlflow

    for v in versions:
        reqs = open(mlflow.pyfunc.get_model_dependencies(f"models:/{names.MODEL_NAME}/{v.version}")).read()
        required = {line.split("==")[0] for line in reqs.split()}
        assert {"jax", "jaxlib", "keras", "mlflow"} <= required and "tensorflow" not in required, reqs


# -- the backend's choice and packages: no training --------------------------------------------


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    return tmp_path


def _installed(monkeypatch, *dists):
    monkeypatch.setattr(backend, "find_spec", lambda name: object() if name in dists else None)


def test_keras_default_kept_when_installed(keras_home, monkeypatch):
    (keras_home / "keras.json").write_text(json.dumps({"backend": "tensorflow"}))
    _installed(monkeypatch, "tensorflow", "jax")
    assert backend.choose() is None and "KERAS_BACKEND" not in os.environ


def test_installed_backend_chosen_when_keras_default_is_missing(keras_home, monkeypatch):
    (keras_home / "keras.json").write_text(json.dumps({"backend": "tensorflow"}))  # Keras wrote it elsewhere
    _installed(monkeypatch, "jax", "torch")
    assert backend.choose() == "jax" and os.environ["KERAS_BACKEND"] == "jax"


def test_no_keras_json_and_only_torch(keras_home, monkeypatch):
    _installed(monkeypatch, "torch")
    assert backend.choose() == "torch"


def test_keras_backend_variable_always_wins(keras_home, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    _installed(monkeypatch, "jax")
    assert backend.choose() is None and os.environ["KERAS_BACKEND"] == "tensorflow"


def test_packages_pin_what_pip_can_install(monkeypatch):
    monkeypatch.setattr(backend, "version", lambda dist: {"jax": "0.10.2", "jaxlib": "0.10.2",
                                                           "torch": "2.13.0+cpu"}[dist])
    assert backend.packages("jax") == {"jax": "0.10.2", "jaxlib": "0.10.2"}
    assert backend.packages("torch") == {"torch": "2.13.0"}  # no index serves a local label
    assert backend.packages("numpy") == {}


def test_logged_requirements_name_the_running_backend():
    import keras

    from pneumo.release.package import requirements

    required = {r.split("==")[0] for r in requirements()}
    running = keras.backend.backend()
    assert set(backend.PACKAGES.get(running, ())) <= required
    assert not (required & {p for b, ps in backend.PACKAGES.items() if b != running for p in ps})


def test_auto_jit_means_xla_only_where_there_is_an_accelerator(monkeypatch):
    import keras

    if keras.backend.backend() != "tensorflow":
        assert backend.jit_compile("auto") == "auto"  # JAX must compile; torch runs eager either way
        return
    monkeypatch.setattr(backend, "accelerators", lambda: [])
    assert backend.jit_compile("auto") is False  # XLA made a CPU epoch 1.8x slower
    assert backend.jit_compile(True) is True and backend.jit_compile(False) is False  # what the user forces
    monkeypatch.setattr(backend, "accelerators", lambda: ["NVIDIA H100"])
    assert backend.jit_compile("auto") == "auto"  # Keras' own choice: XLA when every layer allows it


# -- which backends the tests promise to run on -------------------------------------------------


@pytest.mark.parametrize("ci, promised, expected", [
    ("", None, ["jax", "torch"]),  # a developer's machine: every backend, a missing one skips by name
    ("", "tensorflow jax", ["jax", "torch"]),  # the promise is CI's alone
    ("true", "tensorflow jax", ["jax"]),  # CI, as .ci/run says: torch not installed there, and not run
    ("true", "tensorflow jax torch", ["jax", "torch"]),
    ("true", None, ["jax", "torch"]),  # CI that promises nothing in particular runs them all: a missing one fails
])
def test_the_backends_a_test_runs_on(monkeypatch, ci, promised, expected):
    monkeypatch.setenv("CI", ci)
    if promised is None:
        monkeypatch.delenv(helpers.PROMISED, raising=False)
    else:
        monkeypatch.setenv(helpers.PROMISED, promised)
    assert backends("jax", "torch") == expected


def test_a_backend_ci_cannot_have_is_a_config_error(monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv(helpers.PROMISED, "tensorflow pytorch")
    with pytest.raises(ValueError, match="pytorch is not one of tensorflow, jax, torch"):
        backends("jax", "torch")


@pytest.mark.parametrize("ci, outcome", [("", pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_a_missing_backend_is_a_named_skip_and_in_ci_a_failure(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(helpers, "find_spec", lambda name: None if name == "torch" else object())
    require_backend("jax")  # installed: nothing happens
    with pytest.raises(outcome, match="the Keras backend torch is not installed"):
        require_backend("torch")
