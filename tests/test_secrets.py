"""Credentials given to a sweep leave no trace in the store, the Hydra outputs or the logs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from test_data_sources import DATASET, fake_kaggle_env, zip_dir
from test_data_sources import KAGGLE_KEY as KEY
from test_data_sources import KAGGLE_USER as USER

from pneumo.record import names

from helpers import TOY, clean_env, client_for, run_pneumo
from store_fixture import start_server, stop

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
@pytest.mark.ci
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


@pytest.mark.slow
def test_a_password_in_any_uri_is_found_nowhere(tmp_path, monkeypatch):
    """Issue 28: `tracking.uri=http://user:secret@host` reached the console and Hydra's saved files, because
    redaction looked only at key names. Here a real tracking server takes the job (it ignores the basic-auth
    credentials; MLflow sends them), and `data.root` is a mount named after its share's URL, credentials and
    all: neither password may show anywhere the job writes, the server's database and artifacts included,
    nor on the console (MLflow prints 'View run ... at: <tracking URI>/#/...' itself)."""
    server_pw, share_pw = "s3cr3t-Tracking-pw", "r00t-Share-pw"
    for folder in ("home", "tmp"):
        (tmp_path / folder).mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    server = tmp_path / "server"
    cmd = lambda port: [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",  # noqa: E731
                        f"sqlite:///{server}/mlflow.db", "--artifacts-destination", str(server / "artifacts"),
                        "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    proc, port = start_server(cmd, clean_env(), tmp_path / "server.log", "/health")
    try:
        uri, root = f"http://pneumo:{server_pw}@127.0.0.1:{port}", tmp_path / "mnt" / f"pneumo:{share_pw}@nas" / "xray"
        job = run_pneumo(["train", *TOY, "experiment=uri", "tracking=server", f"tracking.uri={uri}",
                          f"data.root={root}"], tmp_path, env_extra={"HOME": str(tmp_path / "home")}, new_store=True)
        import mlflow

        client = mlflow.MlflowClient(f"http://127.0.0.1:{port}")
        run = client.search_runs([client.get_experiment_by_name("uri").experiment_id],
                                 f"tags.`{names.TAG_ROLE}` = 'job'")[0]
    finally:
        stop(proc)
    assert run.info.status == "FINISHED" and list(root.rglob("*.jpeg"))  # the job ran, on the server, from root
    assert not (tmp_path / "mlruns").exists()  # nothing went to a local store
    shown, shown_root = f"http://pneumo:***@127.0.0.1:{port}", f"{tmp_path}/mnt/pneumo:***@nas/xray"
    assert run.data.params["tracking.uri"] == shown and run.data.params["data.root"] == shown_root
    assert f"tracking.uri={shown} data.root={shown_root}" in run.data.tags[names.TAG_OVERRIDES]
    saved = {f.name: yaml.safe_load(f.read_text()) for f in (tmp_path / "outputs").rglob(".hydra/*.yaml")}
    assert saved["config.yaml"]["tracking"]["uri"] == shown and saved["config.yaml"]["data"]["root"] == shown_root
    assert f"tracking.uri={shown}" in saved["overrides.yaml"] and f"data.root={shown_root}" in saved["overrides.yaml"]

    needles = [server_pw.encode(), share_pw.encode()]
    written = [f for f in tmp_path.rglob("*") if f.is_file() and not f.is_relative_to(root)]
    assert any(f.suffix == ".keras" for f in written) and (server / "mlflow.db").stat().st_size > 0
    assert occurrences(tmp_path, needles, skip=root) == []  # the data's own folder is named with it: the user's
    for needle in (server_pw, share_pw):
        assert needle not in job.stdout + job.stderr


@pytest.mark.parametrize("text, shown", [
    ("tracking.uri=http://pneumo:pw-1@host:5000", "tracking.uri=http://pneumo:***@host:5000"),
    ("https://user:tok%40en:x@host/api", "https://user:***@host/api"),  # ':' inside a password, '@' encoded
    ("/mnt/pneumo:pw-2@nas/xray", "/mnt/pneumo:***@nas/xray"),  # not a URI: still a user:password@
    ("[14:32:43,123][pneumo] - a run of user:pw-3@host", "[14:32:43,123][pneumo] - a run of user:***@host"),
    ("models:/pneumonia-classifier@champion", "models:/pneumonia-classifier@champion"),  # '/': no userinfo
    ("postgresql://pneumo@127.0.0.1:5432/mlflow", "postgresql://pneumo@127.0.0.1:5432/mlflow"),  # a user, no password
    ("user@example.org, note: value@x, {'a':'b@c'}", "user@example.org, note: value@x, {'a':'b@c'}"),
])
def test_the_password_of_a_user_password_at_is_scrubbed_whatever_holds_it(text, shown):
    from pneumo.record import redact

    assert redact.scrub(text) == redact.scrub_text(text) == shown
    assert redact.redact_overrides([text]) == [shown]
    assert redact.redact_config({"any": {"where": [text]}}) == {"any": {"where": [shown]}}
    assert yaml.safe_load(redact.redact_yaml(yaml.safe_dump({"any": text}))) == {"any": shown}


def test_a_tracking_servers_credentials_go_to_mlflows_own_variables(monkeypatch):
    """MLflow prints the tracking URI ('View run ... at: <uri>/#/...'): it gets the URI without them, and
    the credentials as its documented MLFLOW_TRACKING_USERNAME / _PASSWORD (the same basic auth).
    A database URI keeps its password: SQLAlchemy needs it there."""
    from pneumo.record import store

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert store._credentials_to_env("http://pneumo:pw-1@127.0.0.1:5000/") == "http://127.0.0.1:5000/"
    assert (store.os.environ["MLFLOW_TRACKING_USERNAME"], store.os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("pneumo",
                                                                                                          "pw-1")
    db = "postgresql://pneumo:pw-2@127.0.0.1:5432/mlflow"
    assert store._credentials_to_env(db) == db and store._credentials_to_env(None) is None
