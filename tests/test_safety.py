"""Safe by default: no pickles in logged models, Keras safe mode on load, servers on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from pneumo.record import names

from helpers import empty_store
from store_fixture import smoke_store  # noqa: F401


def test_a_keras_file_with_arbitrary_code_is_refused_on_load(tmp_path):
    import keras

    from pneumo.release.serving import PneumoniaModel

    inputs = keras.Input((32, 32, 1))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)  # code, serialised as bytecode
    keras.Model(inputs, outputs).save(tmp_path / "evil.keras")
    (tmp_path / "meta.json").write_text(json.dumps({"image_size": 32, "threshold": 0.5}))
    context = SimpleNamespace(artifacts={"keras_model": str(tmp_path / "evil.keras"),
                                         "meta": str(tmp_path / "meta.json")})
    with pytest.raises(ValueError, match="safe_mode"):
        PneumoniaModel().load_context(context)


def test_ui_binds_to_loopback_unless_told(monkeypatch, tmp_path):
    import os

    from pneumo import cli

    calls = []
    monkeypatch.setattr(os, "execv", lambda f, argv: calls.append(argv))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", empty_store(tmp_path))  # pneumo ui refuses a store that is not there
    cli.main(["ui"])
    cli.main(["ui", "--host", "0.0.0.0"])
    hosts = [argv[argv.index("--host") + 1] for argv in calls]
    assert hosts == ["127.0.0.1", "0.0.0.0"]


@pytest.mark.slow
def test_logged_model_is_code_and_a_safe_keras_file_not_a_pickle(smoke_store, tmp_path):
    from helpers import client_for

    client = client_for(smoke_store)
    version = client.get_model_version_by_alias(names.MODEL_NAME, names.CHAMPION)
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{names.MODEL_NAME}/{version.version}",
                                                     dst_path=str(tmp_path / "dl")))
    files = [p for p in local.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pkl", ".pickle", ".cloudpickle")], files
    mlmodel = (local / "MLmodel").read_text()
    assert "model_code_path" in mlmodel and "serving.py" in mlmodel  # MLflow models-from-code
    assert any(p.suffix == ".keras" for p in files)
