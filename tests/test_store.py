"""One store, one place: a local store is one folder (its artifacts beside its database), a command
that reads writes nothing to it, a store that is not there or not a database is refused in seconds
naming it, and a moved or copied folder still works without the original.

The fast tests build their stores with the real MLflow client in tmp_path; the slow one moves the
smoke sweep's store (tests/store_fixture.py) and predicts, compares and promotes from the copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from pneumo.config import paths
from pneumo.record import local, names, store

from helpers import empty_store, run_pneumo
from store_fixture import copy_store, smoke_jpegs, smoke_store  # noqa: F401


def cli(*argv: str) -> int:
    from pneumo.cli import main

    return main(list(argv))


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file under folder: size, mtime and content hash; and every folder (a new empty one counts)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_dir():
            out[rel] = ("dir",)
        else:
            st = p.stat()
            out[rel] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


@pytest.fixture(autouse=True)
def _fresh_tracking(monkeypatch):
    """No store named on entry; the environment and MLflow's tracking URI as they were on exit. `pneumo ui`
    run in process would replace this process by the MLflow server: where it gets that far, it fails."""

    def execv(path, argv):
        raise AssertionError(f"pneumo ui started the MLflow server: {argv}")

    monkeypatch.setattr(os, "execv", execv)
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    mlflow.set_tracking_uri(None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


def uri_of(folder: Path) -> str:
    return f"sqlite:///{folder / paths.DATABASE}"


def job_store(folder: Path, experiment: str = "sweep") -> tuple[str, str]:
    """A store with one finished job run and its predictions artifact, made as a job makes it
    (MLFLOW_TRACKING_URI names it; the tables are a copy of an empty store's: helpers.seed_store).
    Returns (run id, the artifact's text)."""
    os.environ["MLFLOW_TRACKING_URI"] = empty_store(folder)
    opened = store.connect()
    client = MlflowClient(opened.uri)
    run = client.create_run(opened.experiment(experiment), tags={names.TAG_ROLE: names.ROLE_JOB})
    client.log_metric(run.info.run_id, names.TEST_AUC, 0.9)
    client.log_text(run.info.run_id, "hash,patient,y_true,probability\n", names.PREDICTIONS_ARTIFACT)
    client.set_terminated(run.info.run_id)
    return run.info.run_id, "hash,patient,y_true,probability\n"


# -- refused in seconds, naming it ------------------------------------------------------------


def _not_a_database(tmp: Path) -> dict[str, tuple[str, str]]:
    """URI -> (what the error says, the path it names)."""
    (tmp / "folder").mkdir()
    (tmp / "notes.txt").write_text("not a database\n")
    with sqlite3.connect(tmp / "other.db") as con:
        con.execute("CREATE TABLE patients (id INTEGER)")
    return {
        f"sqlite:///{tmp}/folder": ("is a folder, not a database", f"{tmp}/folder"),
        f"{tmp}/folder": ("names a folder of files, not a database", f"{tmp}/folder"),
        f"sqlite:///{tmp}/notes.txt": ("is not an sqlite database", f"{tmp}/notes.txt"),
        f"sqlite:///{tmp}/other.db": ("not an MLflow store", f"{tmp}/other.db"),
    }


READERS = [["compare"], ["promote", "--dry-run"], ["ui"], ["predict", "{film}"]]


def _argv(command: list[str], tmp: Path) -> list[str]:
    (tmp / "film.jpeg").touch()
    return [a.format(film=tmp / "film.jpeg") for a in command]


@pytest.mark.parametrize("command", [*READERS, ["train"]])
def test_a_store_that_is_not_a_database_is_refused_in_seconds_naming_it(command, tmp_path, monkeypatch, capsys):
    command = _argv(command, tmp_path)
    """Refused before MLflow opens it: MLflow would retry for ~100 s and end in its own traceback, not
    this one line (no wall-clock bound: see docs/reliability.md, In CI)."""
    for uri, (why, path) in _not_a_database(tmp_path).items():
        before = snapshot(tmp_path)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        assert cli(*command) == 2, uri
        err = capsys.readouterr().err
        assert why in err and path in err and err.count("\n") == 1, err
        assert snapshot(tmp_path) == before, f"{command} on {uri} changed {tmp_path}"


@pytest.mark.parametrize("command", [*READERS, ["promote", "--version", "1", "--force", "--reason", "x"],
                                     ["rerun", "abc"]])
def test_a_missing_store_is_refused_not_created(command, tmp_path, monkeypatch, capsys):
    command, typo = _argv(command, tmp_path), tmp_path / "mlrnus"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri_of(typo))
    assert cli(*command) == 2
    err = capsys.readouterr().err
    assert f"{typo}/mlflow.db: no MLflow store there" in err, err
    assert not typo.exists()
    # An empty file is no store either (sqlite would take it as an empty database and MLflow migrate it).
    typo.mkdir()
    (typo / paths.DATABASE).touch()
    assert cli(*command) == 2 and "(an empty file)" in capsys.readouterr().err
    assert (typo / paths.DATABASE).stat().st_size == 0


def test_compare_and_promote_on_an_empty_store_say_so_and_one_job_is_enough(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", empty_store(tmp_path))
    assert cli("compare") == 2
    assert f"no jobs in any experiment at {uri_of(tmp_path)}" in capsys.readouterr().err
    assert cli("promote", "--dry-run") == 2
    assert f"no registered version of {names.MODEL_NAME} in {uri_of(tmp_path)}" in capsys.readouterr().err
    job_store(tmp_path)
    assert cli("compare", "--format", "json") == 0
    assert '"run_id"' in capsys.readouterr().out


# -- artifacts beside the database --------------------------------------------------------------


def test_artifacts_go_beside_the_database_that_mlflow_tracking_uri_names(tmp_path, monkeypatch):
    """Not into tracking.store (the checkout's mlruns/) nor the working directory (in a job: Hydra's)."""
    elsewhere, job_dir = tmp_path / "checkout-mlruns", tmp_path / "multirun" / "0"
    job_dir.mkdir(parents=True)
    monkeypatch.chdir(job_dir)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri_of(tmp_path / "store"))
    opened = store.connect(None, elsewhere, creates=True)
    client = MlflowClient(opened.uri)
    exp = client.get_experiment(opened.experiment("my sweep"))
    assert local.local_path(exp.artifact_location) == tmp_path / "store" / "artifacts" / "my-sweep"
    default = client.get_experiment("0")  # MLflow's own, made with the tables
    assert local.local_path(default.artifact_location) == tmp_path / "store" / "artifacts" / "0"
    assert not elsewhere.exists() and not list(job_dir.iterdir())


def test_a_relative_store_path_is_taken_from_where_pneumo_started(tmp_path, monkeypatch):
    launched, job_dir = tmp_path / "project", tmp_path / "project" / "multirun" / "0"
    job_dir.mkdir(parents=True)
    monkeypatch.chdir(job_dir)
    empty_store(launched / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///store/mlflow.db")
    assert store.setup(cwd=launched) == f"sqlite:///{launched}/store/mlflow.db"
    assert not (job_dir / "store").exists()


# -- moved or copied -------------------------------------------------------------------------------


def test_a_moved_store_reads_from_its_new_folder_writes_nothing_and_a_writer_records_the_move(tmp_path, capsys):
    run_id, text = job_store(tmp_path / "first")
    shutil.copytree(tmp_path / "first", tmp_path / "moved")
    shutil.rmtree(tmp_path / "first")
    os.environ["MLFLOW_TRACKING_URI"] = uri_of(tmp_path / "moved")
    before = snapshot(tmp_path / "moved")
    got = Path(store.connect().download(run_id, names.PREDICTIONS_ARTIFACT, str(tmp_path / "dl"))).read_text()
    assert got == text
    assert cli("compare", "--format", "json") == 0 and run_id in capsys.readouterr().out
    assert snapshot(tmp_path / "moved") == before, "a read changed the moved store"
    assert not (tmp_path / "first").exists()

    opened = store.connect(writes=True)  # a command that adds to the store records where it is now
    client = MlflowClient(opened.uri)
    recorded = client.get_run(run_id).info.artifact_uri
    assert local.local_path(recorded).is_relative_to(tmp_path / "moved")
    assert local.local_path(client.get_experiment("0").artifact_location).is_relative_to(tmp_path / "moved")
    new = client.create_run(opened.experiment("sweep")).info.run_id
    client.log_text(new, "x", "x.txt")
    assert (tmp_path / "moved" / "artifacts" / "sweep" / new / "artifacts" / "x.txt").is_file()
    assert not (tmp_path / "first").exists()


class Started(Exception):
    """`pneumo ui` got as far as starting the MLflow server (its command line is args[0])."""


def test_ui_on_a_moved_store_says_so_and_relocate_records_the_new_folder(tmp_path, monkeypatch, capsys):
    def execv(path, argv):
        raise Started(argv)

    run_id, _ = job_store(tmp_path / "first")
    shutil.copytree(tmp_path / "first", tmp_path / "moved")
    shutil.rmtree(tmp_path / "first")
    monkeypatch.setattr(os, "execv", execv)
    before = snapshot(tmp_path / "moved")
    with pytest.raises(Started) as started:
        cli("ui", "--backend-store-uri", uri_of(tmp_path / "moved"))
    assert "was moved or copied" in capsys.readouterr().err
    assert str(tmp_path / "moved" / "artifacts") in started.value.args[0]  # where the UI puts new experiments
    assert snapshot(tmp_path / "moved") == before
    with pytest.raises(Started):
        cli("ui", "--backend-store-uri", uri_of(tmp_path / "moved"), "--relocate")
    assert "was moved or copied" not in capsys.readouterr().err
    artifacts = MlflowClient(uri_of(tmp_path / "moved")).get_run(run_id).info.artifact_uri
    assert local.local_path(artifacts).is_relative_to(tmp_path / "moved")


def test_a_store_whose_artifacts_lie_only_where_recorded_is_left_as_it_is(tmp_path, capsys):
    """A store made before artifacts sat beside the database (MLFLOW_TRACKING_URI named it, tracking.store
    held the artifacts): the recorded folder exists and none beside the database, so nothing is moved."""
    run_id, text = job_store(tmp_path / "old")
    shutil.copy(tmp_path / "old" / paths.DATABASE, tmp_path / "db-only.db")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path}/db-only.db"
    opened = store.connect(writes=True)
    assert local.local_path(MlflowClient(opened.uri).get_run(run_id).info.artifact_uri).is_relative_to(tmp_path / "old")
    assert Path(opened.download(run_id, names.PREDICTIONS_ARTIFACT, str(tmp_path / "dl"))).read_text() == text


# -- the smoke sweep's store, moved --------------------------------------------------------------


def _pneumo(args: list[str], folder: Path, cwd: Path):
    return run_pneumo(args, cwd, hydra=False, check=False, env_extra={"MLFLOW_TRACKING_URI": uri_of(folder)})


def _reads(folder: Path, cwd: Path, jpegs: list[Path], other: str) -> dict[str, str]:
    """predict (the champion), compare and promote --dry-run (a paired test against the champion) on a
    store: each must succeed from the store's own folder."""
    predicted = _pneumo(["predict", *map(str, jpegs), "--format", "csv"], folder, cwd)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    compared = _pneumo(["compare", "--experiment", "smoke", "--format", "json"], folder, cwd)
    assert compared.returncode == 0 and compared.stdout.count('"run_id"') == 2, compared.stderr[-2000:]
    decided = _pneumo(["promote", "--dry-run", "--version", other], folder, cwd)
    assert decided.returncode in (0, 1) and "paired images" in decided.stdout, decided.stdout + decided.stderr
    assert "cannot read" not in decided.stdout
    return {"predict": predicted.stdout, "promote": decided.stdout}


@pytest.mark.slow
@pytest.mark.ci
def test_the_smoke_store_moved_predicts_compares_and_promotes_and_reads_write_nothing(smoke_store, tmp_path):
    first = copy_store(smoke_store, tmp_path / "first")  # a store of its own: its database names this folder
    client = MlflowClient(uri_of(first / "mlruns"))
    champion = str(client.get_model_version_by_alias(names.MODEL_NAME, names.CHAMPION).version)
    other = next(str(v.version) for v in client.search_model_versions(f"name = '{names.MODEL_NAME}'")
                 if str(v.version) != champion)
    jpegs = smoke_jpegs(first, 2)
    work = tmp_path / "work"
    work.mkdir()

    before = snapshot(first / "mlruns")
    read_there = _reads(first / "mlruns", work, jpegs, other)
    assert snapshot(first / "mlruns") == before, "a read-only command changed the store"

    moved = tmp_path / "moved"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    jpegs = smoke_jpegs(moved, 2)
    before = snapshot(moved / "mlruns")
    read_here = _reads(moved / "mlruns", work, jpegs, other)
    assert read_here["promote"] == read_there["promote"]
    assert read_here["predict"].replace(str(moved), "") == read_there["predict"].replace(str(tmp_path / "first"), "")
    assert snapshot(moved / "mlruns") == before, "a read-only command changed the moved store"

    promoted = _pneumo(["promote", "--version", other, "--force", "--reason", "moved-store test"], moved / "mlruns",
                       work)
    assert promoted.returncode == 0 and "PROMOTED" in promoted.stdout, promoted.stdout + promoted.stderr
    assert "was moved" in promoted.stderr
    client = MlflowClient(uri_of(moved / "mlruns"))
    version = client.get_model_version_by_alias(names.MODEL_NAME, names.CHAMPION)
    assert str(version.version) == other
    assert local.local_path(client.get_model_version_download_uri(names.MODEL_NAME, other)).is_dir()
    # As `mlflow models serve` resolves it: the registry is the tracking store the environment names (the
    # tracking_uri argument of download_artifacts does not reach the registry: MLflow's default would).
    mlflow.set_tracking_uri(client.tracking_uri)
    loaded = mlflow.artifacts.download_artifacts(f"models:/{names.MODEL_NAME}@{names.CHAMPION}",
                                                 dst_path=str(tmp_path / "served"))
    assert Path(loaded, "MLmodel").is_file()  # MLflow's own loader (mlflow models serve) finds it too
    assert not first.exists(), "something wrote into the deleted original folder"
