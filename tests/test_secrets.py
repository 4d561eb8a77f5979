"""Credentials given to a sweep leave no trace in the store, the Hydra outputs or the logs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_data_sources import DATASET, fake_kaggle_env, zip_dir
from test_data_sources import KAGGLE_KEY as KEY
from test_data_sources import KAGGLE_USER as USER

from pneumo.record import names

from helpers import client_for, run_pneumo

TOKEN = "hf_Tok3nValue9988776655"
# The user's own copy of the dataset on Kaggle: the owner in its name is their username.
OWN_DATASET = f"{USER}/{DATASET.split('/')[1]}"


def occurrences(root: Path, needles: list[bytes], skip: Path | None = None) -> list[str]:
    found = []
    for f in root.rglob("*"):
        if f.is_file() and not (skip and f.is_relative_to(skip)):
            data = f.read_bytes()
            found += [f"{f}: {n.decode()}" for n in needles if n in data]
    return found


@pytest.mark.slow
def test_smoke_sweep_leaves_no_credential_anywhere(tmp_path, monkeypatch):
    """The secrets really travel through the sweep: the Kaggle download authenticates with
    KAGGLE_USERNAME / KAGGLE_KEY (the client, faked at the network, logs the username as
    a library might), data.dataset names the user's own copy (the username in a param, a
    tag, the run name and Hydra's launch line), and a token override sets an environment
    variable. Then every byte the sweep wrote is searched, HOME and the temp folder included."""
    from pneumo.data import synthetic

    fake = tmp_path / "fake-kaggle"  # the test's own files: the archive Kaggle hands out, its call log
    archive = zip_dir(synthetic.generate(fake / "src" / "chest_xray", n_images=48, image_px=48),
                      fake / "chest-xray-pneumonia.zip")
    calls = fake / "calls.txt"
    (tmp_path / "home").mkdir()
    # What the sweep (Python's tempfile, MLflow's artifact staging, Keras Tuner) leaves in the system temp
    # folder would otherwise never be searched: the sweep gets its own, inside what is searched below.
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    env = {**fake_kaggle_env(archive, calls), "HOME": str(tmp_path / "home")}  # what libraries write to ~ too
    proc = run_pneumo(["sweep", "smoke", "data=kaggle", f"data.dataset={OWN_DATASET}", "trainer.epochs=1",
                       "tuner.max_trials=1", "evaluation.bootstrap=50",
                       f"+hydra.job.env_set.HUB_TOKEN={TOKEN}"], tmp_path, env_extra=env)
    assert calls.read_text().split() == [OWN_DATASET]  # downloaded once, with the credentials, for both jobs

    # What the store shows instead: the values redacted where they were.
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("smoke")
    jobs = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'")
    assert len(jobs) == 2
    redacted = "data.dataset=***/chest-xray-pneumonia"
    for job in jobs:
        assert job.data.params["data.dataset"] == "***/chest-xray-pneumonia"
        assert redacted in job.data.tags[names.TAG_OVERRIDES].split() and redacted in job.info.run_name
    said = [line for f in (tmp_path / "multirun").rglob("*.log") for line in f.read_text().splitlines()
            if "Kaggle API authenticated as" in line]
    assert said and all(line.endswith("authenticated as ***") for line in said), said  # the library's line, scrubbed
    assert f"model=cnn data=kaggle {redacted}" in proc.stdout  # Hydra's launch line, scrubbed
    # Hydra's saved config (hydra.job.env_set holds the token) is redacted and still loads as YAML.
    saved = list((tmp_path / "multirun").rglob("*.yaml"))
    assert len(saved) == 1 + 2 * 3  # multirun.yaml + each job's .hydra/{config,hydra,overrides}.yaml
    for f in saved:
        tree = yaml.safe_load(f.read_text())
        if f.name in ("hydra.yaml", "multirun.yaml"):
            hydra = tree["hydra"]
            assert hydra["job"]["env_set"] == {"HUB_TOKEN": "***"}
            assert "+hydra.job.env_set.HUB_TOKEN=***" in hydra["overrides"]["hydra"]
            assert hydra["job"]["config"]["override_dirname"]["exclude_keys"] == []  # not a credential

    # Not one byte of any value anywhere: store (db and artifacts), Hydra outputs and logs,
    # caches (tuner state, decoded data, the download), HOME, the temp folder, and the console.
    needles = [USER.encode(), KEY.encode(), TOKEN.encode()]
    assert (tmp_path / "mlruns" / "mlflow.db").stat().st_size > 0 and list((tmp_path / "mlruns").rglob("*.keras"))
    assert list((tmp_path / "multirun").rglob("multirun.yaml")) and list((tmp_path / "cache" / "kaggle").rglob("*.jpeg"))
    assert occurrences(tmp_path, needles, skip=fake) == []
    for needle in ("7f3a9c", KEY, TOKEN):
        assert needle not in proc.stdout + proc.stderr


def test_scrub_survives_the_environment_changing_under_it(monkeypatch):
    """MLflow's telemetry thread sets and deletes variables while a job scrubs its params
    (a KeyError from `os.environ.items()` crashed a job at start)."""
    import os
    import sys
    import threading

    from pneumo.record import redact

    monkeypatch.setenv("KAGGLE_KEY", KEY)
    stop = threading.Event()

    def flap():
        while not stop.is_set():
            os.environ["_PNEUMO_FLAPPING"] = "x"
            os.environ.pop("_PNEUMO_FLAPPING", None)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    thread = threading.Thread(target=flap, daemon=True)
    thread.start()
    try:
        for _ in range(3000):
            assert redact.scrub(f"key {KEY}") == "key ***"
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)


def test_saved_yaml_is_redacted_and_still_loads(monkeypatch):
    """Hydra's saved config, redacted: an unquoted *** would read as a YAML alias (a file no
    tool can load), and `exclude_keys: []` is no credential."""
    from pneumo.record import redact

    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    text = f"""hydra:
  job:
    env_set:
      HUB_TOKEN: {TOKEN}
    config:
      override_dirname:
        exclude_keys: []
  overrides:
    hydra:
    - +hydra.job.env_set.HUB_TOKEN={TOKEN}
data:
  dataset: {OWN_DATASET}
"""
    assert yaml.safe_load(redact.redact_yaml(text)) == {
        "hydra": {"job": {"env_set": {"HUB_TOKEN": "***"}, "config": {"override_dirname": {"exclude_keys": []}}},
                  "overrides": {"hydra": ["+hydra.job.env_set.HUB_TOKEN=***"]}},
        "data": {"dataset": "***/chest-xray-pneumonia"},
    }
    plain = "data:\n  dataset: someone/chest-xray-pneumonia  # a comment Hydra never writes\n"
    assert redact.redact_yaml(plain) == plain  # nothing to hide: the file is left as it was
