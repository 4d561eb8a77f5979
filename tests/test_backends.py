"""Model and training code are Keras 3 only: the smoke sweep also runs on the JAX backend."""

from __future__ import annotations

import importlib.util

import pytest
from helpers import client_for, run_pneumo

from pneumo import metrics

pytestmark = pytest.mark.slow


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_smoke_sweep_on_jax(tmp_path):
    run_pneumo(["sweep", "smoke", "trainer.epochs=1"], tmp_path, env_extra={"KERAS_BACKEND": "jax"})
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("smoke")
    jobs = client.search_runs([exp.experiment_id], f"tags.`{metrics.TAG_ROLE}` = 'job'")
    assert len(jobs) == 2 and {j.info.status for j in jobs} == {"FINISHED"}
    assert {j.data.tags["keras.backend"] for j in jobs} == {"jax"}
    assert len(client.search_model_versions(f"name='{metrics.MODEL_NAME}'")) == 2
