"""`pneumo rerun` refuses, before anything trains, a job it could not rerun as the same job (exit 2, one
line saying why, the store unchanged): one that was KILLED, one whose logged overrides hold a redacted
value, one whose logged config has a key conf/ no longer has.

No training: each job's record is written as a job writes it (pneumo.record.jobs.JobRecord, from the
real conf/ composed with Hydra) into a sqlite store in tmp, and `pneumo rerun` runs in process. The
slow end-to-end refusals (changed data, a changed default, a trial, an added override) are in
test_reruns.py.
"""

from __future__ import annotations

import shutil

import mlflow
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pneumo.cli import main as cli
from pneumo.config import paths, schema
from pneumo.record import names, provenance
from pneumo.record.client import Store
from pneumo.record.jobs import JobRecord

from helpers import empty_store as new_store

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def composed(overrides: list[str]) -> dict:
    """The resolved config a `pneumo train OVERRIDES` job would log, from this checkout's conf/."""
    schema.register()
    with initialize_config_dir(config_dir=str(paths.CONF_DIR.resolve()), version_base="1.3"):
        return OmegaConf.to_container(compose("config", overrides=overrides), resolve=True)


def logged_job(client, exp_id: str, overrides: list[str], plain: dict, status: str = "FINISHED") -> str:
    """A job run as `pneumo train` leaves it: role, config source, commit, config and overrides artifacts."""
    run_id = client.create_run(exp_id, run_name=" ".join(overrides) or "defaults").info.run_id
    record = JobRecord(Store(client.tracking_uri), exp_id, run_id)
    record.set_tags({names.TAG_ROLE: names.ROLE_JOB, names.TAG_CONFIG: "conf/config",
                     names.TAG_OVERRIDES: " ".join(overrides), **provenance.git_tags(), **provenance.runtime_tags()})
    record.log_config(plain, overrides)
    record.set_tags({names.TAG_GIT_COMMIT: COMMIT})  # the commit it ran at, named in the refusal
    client.set_terminated(run_id, status)
    return run_id


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """A new sqlite store with one experiment, made once (creating MLflow's tables takes seconds)."""
    root = tmp_path_factory.mktemp("rerun-store")
    client = mlflow.MlflowClient(new_store(root))
    exp_id = client.create_experiment("reruns", artifact_location=(root / "artifacts").as_uri())
    return root / "mlflow.db", exp_id


@pytest.fixture
def store(empty_store, tmp_path, monkeypatch):
    """A private copy of the empty store; MLFLOW_TRACKING_URI points at it."""
    db, exp_id = empty_store
    shutil.copy(db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    # A refusal that did not happen would go on to load the data and train: fail at once instead.
    def reached(*args, **kwargs):
        raise AssertionError("the rerun was not refused: it went on to check the data / train")

    monkeypatch.setattr("pneumo.commands.rerun.check_data", reached)
    monkeypatch.setattr("pneumo.commands.run.train", reached)
    return client, exp_id


def everything(client) -> tuple:
    found = client.search_runs([e.experiment_id for e in client.search_experiments()], "")
    return tuple(sorted((r.info.run_id, r.info.status) for r in found))


def refused(client, run_id: str, capsys) -> str:
    """Run `pneumo rerun RUN_ID`; assert exit 2, one line on stderr, nothing written; return that line."""
    before = everything(client)
    assert cli(["rerun", run_id]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("pneumo rerun: ") and err.count("\n") == 1, err
    assert everything(client) == before
    return err.strip()


@pytest.mark.parametrize("status", ["KILLED", "FAILED", "RUNNING"])
def test_a_job_that_did_not_finish_is_refused(store, capsys, status):
    client, exp_id = store
    run_id = logged_job(client, exp_id, ["model=cnn"], composed(["model=cnn"]), status=status)
    line = refused(client, run_id, capsys)
    assert line == (f"pneumo rerun: run {run_id} ended {status}: resume it with the command that started it "
                    "(its completed trials are kept), or rerun a FINISHED job")


def test_redacted_overrides_are_refused(store, capsys):
    """A credential in an override was logged as ***: rerunning with `***` would run another job."""
    client, exp_id = store
    overrides = ["data=kaggle", "data.dataset=***/chest-xray-pneumonia"]  # as pneumo.record.redact logs them
    run_id = logged_job(client, exp_id, overrides, composed(["data=kaggle", "data.dataset=someone/chest-xray-pneumonia"]))
    assert "data.dataset=***/chest-xray-pneumonia" in client.get_run(run_id).data.tags[names.TAG_OVERRIDES]
    line = refused(client, run_id, capsys)
    assert line == (f"pneumo rerun: run {run_id}'s overrides hold redacted values "
                    "(data.dataset=***/chest-xray-pneumonia): run it again by hand with them")


def test_a_key_removed_from_conf_since_is_refused(store, capsys):
    """The job ran with a trainer key that conf/ no longer has: the same overrides compose another config."""
    client, exp_id = store
    plain = composed(["model=cnn"])
    assert "warmup_epochs" not in plain["trainer"]
    plain["trainer"]["warmup_epochs"] = 2  # what the job's conf/ had then
    run_id = logged_job(client, exp_id, ["model=cnn"], plain)
    line = refused(client, run_id, capsys)
    assert line == (f"pneumo rerun: run {run_id}'s overrides now compose another config "
                    f"(trainer.warmup_epochs: no longer a key): conf/ or sweeps/ changed since; "
                    f"rerun it at commit {COMMIT[:12]}")


def test_the_same_record_without_the_removed_key_is_not_refused(store, capsys):
    """The control: the records above are refused for what was changed in them, not for how they are built."""
    client, exp_id = store
    run_id = logged_job(client, exp_id, ["model=cnn"], composed(["model=cnn"]))
    with pytest.raises(AssertionError, match="was not refused"):  # planned, then on to the data: the guard stops it
        cli(["rerun", run_id])


@pytest.mark.parametrize("logged, extra, message", [
    # a job recorded before the start-up check existed: Keras trained it with 32 and the record said 0
    (["trainer.batch_size=0"], [], "trainer.batch_size: 0 is out of range; use an integer >= 1"),
    (["model=cnn"], ["distributed.wait_s=-1"], "distributed.wait_s: -1.0 is out of range; use a number >= 0"),
])
def test_a_rerun_goes_through_the_start_up_check(store, capsys, logged, extra, message):
    """The logged config and the overrides a rerun adds are checked as `pneumo train` checks them: exit 2,
    the key named, nothing written, the data never read."""
    client, exp_id = store
    run_id = logged_job(client, exp_id, logged, composed(logged))
    before = everything(client)
    assert cli(["rerun", run_id, *extra]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"pneumo rerun: {message}\n"
    assert everything(client) == before
