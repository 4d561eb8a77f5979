"""An external test set, first-class: data.test_root as a job's test split, `pneumo evaluate` after the fact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pneumo.data import DataError, load, synthetic
from pneumo.data.loader import labels_digest
from pneumo.record import names
from pneumo.record.client import Store

import toy_model
from helpers import TOY, client_for, empty_store, run_pneumo, tracking_uri
from store_fixture import copy_store, smoke_store  # noqa: F401


@pytest.fixture(scope="module")
def external(tmp_path_factory) -> Path:
    """A labelled folder from another 'collection' (another seed, its own file names): NORMAL/, PNEUMONIA/."""
    made = synthetic.generate(tmp_path_factory.mktemp("gen") / "set", n_images=40, image_px=48, seed=11)
    out = tmp_path_factory.mktemp("ext") / "external"
    for i, f in enumerate(sorted(made.rglob("*.jpeg"))):
        (out / f.parent.name).mkdir(parents=True, exist_ok=True)
        (out / f.parent.name / f"site2-{i:03d}.jpeg").write_bytes(f.read_bytes())
    return out


@pytest.fixture(scope="module")
def store(smoke_store, tmp_path_factory) -> Path:
    """A private copy of the shared smoke store: `pneumo evaluate` adds runs under its jobs."""
    return copy_store(smoke_store, tmp_path_factory.mktemp("evaluated"))


def test_test_root_is_the_test_split_and_the_source_test_is_left_out(synthetic_root, external, data_cfg):
    own = load(data_cfg(source="folder", root=str(synthetic_root)), 32)
    splits = load(data_cfg(source="folder", root=str(synthetic_root), test_root=str(external)), 32)
    files = sorted(p for p in external.rglob("*.jpeg"))
    assert len(splits.test) == len(files) and splits.test_digest != own.test_digest
    assert all(p.startswith("../") and "/site2-" in p for p in splits.test.paths)  # the external files themselves
    assert len(splits.train) + len(splits.val) == len(own.train) + len(own.val)  # source test/ not trained on
    assert any("data.test_root" in why for _, why in splits.skipped)  # and said so
    expected = labels_digest([__import__("hashlib").sha256(p.read_bytes()).hexdigest() for p in files],
                             [int(p.parent.name == "PNEUMONIA") for p in files])
    assert splits.test_digest == expected


def test_a_train_image_also_in_the_external_set_is_kept_out_of_train(synthetic_root, tmp_path, data_cfg):
    import shutil

    ext = tmp_path / "ext"
    shutil.copytree(synthetic_root / "test", ext)
    twin = next((synthetic_root / "train" / "PNEUMONIA").glob("*.jpeg"))
    (ext / "PNEUMONIA" / "copy-of-a-train-film.jpeg").write_bytes(twin.read_bytes())
    splits = load(data_cfg(source="folder", root=str(synthetic_root), test_root=str(ext)), 32)
    assert f"train/PNEUMONIA/{twin.name}" not in set(splits.train.paths) | set(splits.val.paths)
    assert "kept out of train" in dict(splits.skipped)[f"train/PNEUMONIA/{twin.name}"]


@pytest.mark.parametrize("layout, message", [
    (None, "does not exist"),
    ({"notes.txt": b"x"}, "has no class folders"),
    ({"NORMAL/a.jpeg": None}, "PNEUMONIA is missing"),
])
def test_a_bad_test_root_is_one_clear_error_naming_the_key(synthetic_root, tmp_path, data_cfg, layout, message):
    folder = tmp_path / "bad"
    for name, content in (layout or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content or (synthetic_root / "train" / "NORMAL").glob("*.jpeg").__next__().read_bytes())
    with pytest.raises(DataError, match=message) as err:
        load(data_cfg(source="folder", root=str(synthetic_root), test_root=str(folder)), 32)
    assert "data.test_root" in str(err.value)


@pytest.mark.slow
def test_a_job_with_test_root_tests_on_that_folder(tmp_path, external):
    run_pneumo(["train", *TOY, "experiment=ext", f"data.test_root={external}"], tmp_path)
    client = client_for(tmp_path)
    job = client.search_runs([client.get_experiment_by_name("ext").experiment_id],
                             f"tags.`{names.TAG_ROLE}` = 'job'")[0]
    preds = Path(client.download_artifacts(job.info.run_id, names.PREDICTIONS_ARTIFACT)).read_text().splitlines()
    assert len(preds) - 1 == len(list(external.rglob("*.jpeg")))
    assert job.data.tags[names.TAG_TEST_SOURCE] == str(external.resolve())
    assert names.TEST_AUC in job.data.metrics
    assert "data.test_root" not in job.info.run_name  # a location, not what is trained


@pytest.mark.slow
def test_evaluate_records_a_run_under_the_versions_job(store, external, tmp_path):
    env = {"MLFLOW_TRACKING_URI": tracking_uri(store)}
    proc = run_pneumo(["evaluate", str(external), "--model", f"models:/{names.MODEL_NAME}@{names.CHAMPION}",
                       "--bootstrap", "100"], tmp_path, env_extra=env, hydra=False)
    assert "test_auc" in proc.stdout and "recorded as run" in proc.stdout
    client = client_for(store)
    version = client.get_model_version_by_alias(names.MODEL_NAME, names.CHAMPION)
    runs = client.search_runs([client.get_run(version.run_id).info.experiment_id],
                              f"tags.`{names.TAG_ROLE}` = 'evaluation'")
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == version.run_id
    assert run.data.tags["pneumo.model_version"] == str(version.version)
    assert run.data.metrics["images"] == len(list(external.rglob("*.jpeg")))
    low, high = names.ci_names(names.TEST_AUC)
    assert run.data.metrics[low] <= run.data.metrics[names.TEST_AUC] <= run.data.metrics[high]
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/confusion_matrix.png", "evaluation/roc.png", "evaluation/predictions.csv"} <= arts
    cm = json.loads(Path(client.download_artifacts(run.info.run_id, "evaluation/confusion_matrix.json")).read_text())
    assert sum(map(sum, cm["matrix"])) == run.data.metrics["images"]
    assert cm["threshold"] == pytest.approx(float(version.tags[names.THRESHOLD]))  # the job's, not re-chosen

    # compare shows it beside the job's own test metrics
    rows = json.loads(run_pneumo(["compare", "--format", "json"], tmp_path, env_extra=env, hydra=False).stdout)
    row = next(r for r in rows if r["run_id"] == version.run_id)
    assert row["external"][0]["run_id"] == run.info.run_id
    assert row["external"][0][names.TEST_AUC] == pytest.approx(run.data.metrics[names.TEST_AUC])
    assert all(r["external"] == [] for r in rows if r["run_id"] != version.run_id)
    import csv
    import io

    out = run_pneumo(["compare", "--format", "csv"], tmp_path, env_extra=env, hydra=False).stdout
    record = next(r for r in csv.DictReader(io.StringIO(out)) if r["run_id"] == version.run_id)
    column = f"external.{external.name}.v{version.version}.{names.TEST_AUC}"
    assert float(record[column]) == pytest.approx(run.data.metrics[names.TEST_AUC])


# -- bad input: no trained model needed (what fails, fails before the model is loaded) -------


@pytest.fixture(scope="module")
def registered_store(tmp_path_factory) -> str:
    """A sqlite store whose registry holds version 1 with `champion`, and no model files behind it."""
    import mlflow

    root = tmp_path_factory.mktemp("registry-only")
    uri = empty_store(root)
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("s", artifact_location=(root / "artifacts").as_uri())
    run = client.create_run(exp, tags={names.TAG_ROLE: names.ROLE_JOB})
    client.create_registered_model(names.MODEL_NAME)
    version = client.create_model_version(names.MODEL_NAME, f"{run.info.artifact_uri}/{names.MODEL_ARTIFACT}",
                                          run.info.run_id)
    client.set_registered_model_alias(names.MODEL_NAME, names.CHAMPION, version.version)
    return uri


def _one_class(folder: Path) -> None:  # NORMAL/ only: nothing to compute an AUC on
    (folder / "NORMAL").mkdir(parents=True)
    synthetic.generate(folder.parent / "gen", n_images=8, image_px=32, seed=3)
    for i, f in enumerate(sorted((folder.parent / "gen" / "test" / "NORMAL").glob("*.jpeg"))):
        (folder / "NORMAL" / f"n{i}.jpeg").write_bytes(f.read_bytes())


@pytest.mark.parametrize("args, message, lines", [
    (["{tmp}/nowhere"], "does not exist", 1),
    (["{tmp}/one-class"], "one-class/PNEUMONIA is missing: every split needs both NORMAL/ and PNEUMONIA/", 1),
    (["{tmp}/one-class", "--model", "models:/pneumonia-classifier/99"], "cannot use models:/pneumonia-classifier/99",
     2),
    (["{tmp}/one-class", "--model", "runs:/abc/model"], "not a registered version", 2),
])
def test_evaluate_bad_input_is_one_error_line_and_exit_2(registered_store, tmp_path, monkeypatch, capsys, args, message,
                                                          lines):
    """The error on the first line of stderr (a model URI's gets a second: how to list the versions), nothing
    on stdout, no run recorded."""
    import mlflow

    from pneumo.cli import main

    _one_class(tmp_path / "one-class")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered_store)
    client = mlflow.MlflowClient(registered_store)
    before = len(client.search_runs([e.experiment_id for e in client.search_experiments()], ""))
    assert main(["evaluate", *[a.format(tmp=tmp_path) for a in args]]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("pneumo evaluate: ") and message in err.splitlines()[0], err
    assert len(err.splitlines()) == lines, err
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()], "")) == before


# -- score.evaluate in-process on the toy model (tests/toy_model.py): what it reads and records, in seconds --


@pytest.fixture
def toy_version(tmp_path):
    """(client, models:/ URI) of version 1 of the registered model: the toy model logged by package.log_model
    with the referral band (0.3, 0.7), in a new sqlite store."""
    import mlflow

    from pneumo.release import package


    uri = empty_store(tmp_path / "store")
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("s", artifact_location=(tmp_path / "store" / "artifacts").as_uri())
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=exp, tags={names.TAG_ROLE: names.ROLE_JOB}) as run:
            model_uri = package.log_model(toy_model.keras_model(), toy_model.SIDE, 0.5, band=(0.3, 0.7))
        client.create_registered_model(names.MODEL_NAME)
        client.create_model_version(names.MODEL_NAME, model_uri, run.info.run_id)  # resolved in the global store
    finally:
        mlflow.set_tracking_uri(None)
    return client, f"models:/{names.MODEL_NAME}/1"


def _flat_films(folder: Path, levels: dict[str, list[int]]) -> None:

    for label, values in levels.items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for v in values:
            (folder / label / f"{label[0].lower()}{v}.png").write_bytes(toy_model.gray_png(v))


def test_evaluate_scores_each_film_with_the_versions_own_model_and_records_it_under_its_job(toy_version, tmp_path):
    import csv

    from pneumo.release import score


    client, uri = toy_version
    folder = tmp_path / "site"
    _flat_films(folder, {"NORMAL": [10, 40, 70, 140], "PNEUMONIA": [100, 180, 220, 250]})
    (folder / "NORMAL" / "broken.png").write_bytes(b"\x89PNG not really")
    out = score.evaluate(str(folder), uri, bootstrap=20, store=Store(client.tracking_uri))
    assert out.images == 8 and out.threshold == 0.5 and out.version == "1"
    assert [(p, why) for p, why in out.unreadable] == [("NORMAL/broken.png", "not an image (unrecognised format)")]
    # p rises with brightness: NORMAL 140 and PNEUMONIA 100 are the one misordered pair of 16
    assert out.metrics[names.TEST_AUC] == pytest.approx(15 / 16)
    assert out.metrics[names.TEST_SENSITIVITY] == pytest.approx(3 / 4)
    assert out.metrics[names.TEST_SPECIFICITY] == pytest.approx(3 / 4)
    run = client.get_run(out.run_id)
    job = client.get_run(client.get_model_version(names.MODEL_NAME, "1").run_id)
    assert run.data.tags[names.TAG_ROLE] == names.ROLE_EVALUATION and run.info.status == "FINISHED"
    assert run.data.tags[names.PARENT_RUN_ID] == job.info.run_id and run.info.experiment_id == job.info.experiment_id
    assert run.data.tags[names.TAG_MODEL_VERSION] == "1" and run.data.tags[names.TAG_FOLDER] == str(folder)
    assert run.data.metrics[names.IMAGES] == 8 and run.data.metrics[names.TEST_AUC] == pytest.approx(15 / 16)
    assert all(k in run.data.metrics for k, x in out.metrics.items() if k.startswith("test_") and names.finite(x) is not None)
    path = client.download_artifacts(out.run_id, f"{names.EVALUATION_DIR}/{names.EVALUATION_PREDICTIONS}")
    rows = {r["path"]: float(r["probability"]) for r in csv.DictReader(open(path))}
    assert rows == pytest.approx({f"{c}/{c[0].lower()}{v}.png": round(toy_model.p_of(v), 6)
                                  for c, vs in {"NORMAL": [10, 40, 70, 140], "PNEUMONIA": [100, 180, 220, 250]}.items()
                                  for v in vs}, abs=2e-6)
    unreadable = client.download_artifacts(out.run_id, f"{names.EVALUATION_DIR}/unreadable.txt")
    assert Path(unreadable).read_text() == "NORMAL/broken.png\tnot an image (unrecognised format)\n"
    card = client.get_model_version(names.MODEL_NAME, "1").description
    assert f"external evaluation on `{folder}`" in card and f"8 films, threshold 0.5000 (the job's); run `{out.run_id}`" \
        in card  # the version's card lists every external test


def test_evaluate_with_one_readable_class_names_five_unreadable_files_and_counts_the_rest(toy_version, tmp_path):
    from pneumo.release import score

    client, uri = toy_version
    folder = tmp_path / "site"
    _flat_films(folder, {"NORMAL": [10, 40], "PNEUMONIA": []})
    for i in range(6):  # files the index takes and the model refuses
        (folder / "PNEUMONIA" / f"x{i}.png").write_bytes(toy_model.gray_png(10 + i, side=4))
    (folder / "PNEUMONIA" / "z.png").write_bytes(b"")  # one the index passed over
    with pytest.raises(DataError) as e:
        score.evaluate(str(folder), uri, bootstrap=20, store=Store(client.tracking_uri))
    named = "; ".join(f"PNEUMONIA/x{i}.png: too small to be an X-ray (4x4 px)" for i in range(5))
    assert str(e.value) == (f"{folder}: 2 readable images, not both classes: nothing to evaluate (7 unreadable, left out: "
                            f"{named}; and 2 more)")
    for gone in ("x5.png", "z.png"):
        (folder / "PNEUMONIA" / gone).unlink()
    with pytest.raises(DataError) as e:
        score.evaluate(str(folder), uri, bootstrap=20, store=Store(client.tracking_uri))
    assert str(e.value).endswith(f"(5 unreadable, left out: {named})")
    assert len(client.search_runs([client.get_experiment_by_name("s").experiment_id], "")) == 1  # nothing recorded


# -- what `pneumo evaluate` records, checked against its own predictions ---------------------


def _evaluate(store: Path, folder: Path, cwd: Path):
    return run_pneumo(["evaluate", str(folder), "--bootstrap", "100"], cwd, hydra=False, check=False,
                      env_extra={"MLFLOW_TRACKING_URI": tracking_uri(store)})


def _recorded(store: Path, stdout: str):
    """The evaluation run `pneumo evaluate` said it recorded, and its predictions.csv rows."""
    import re

    from pneumo.record import predictions

    run_id = re.search(r"recorded as run (\w+)", stdout).group(1)
    client = client_for(store)
    path = client.download_artifacts(run_id, f"{names.EVALUATION_DIR}/{names.EVALUATION_PREDICTIONS}")
    return client, client.get_run(run_id), predictions.read(path)


@pytest.mark.slow
def test_evaluate_metrics_are_those_of_its_own_logged_predictions(store, external, tmp_path):
    """scikit-learn on evaluation/predictions.csv gives the logged numbers; each probability is what the
    version's model gives that file; each label is the file's class folder."""
    import mlflow
    import numpy as np
    import pandas as pd
    from sklearn.metrics import confusion_matrix, roc_auc_score

    proc = _evaluate(store, external, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client, run, rows = _recorded(store, proc.stdout)
    files = sorted(external.rglob("*.jpeg"))
    path_, _, y_true, probability = names.EVALUATION_COLUMNS
    assert sorted(r[path_] for r in rows) == sorted(str(f.relative_to(external)) for f in files)
    y = np.array([int(r[y_true]) for r in rows])
    p = np.array([float(r[probability]) for r in rows])
    assert list(y) == [int(Path(r[path_]).parent.name == "PNEUMONIA") for r in rows]
    m = run.data.metrics
    assert m[names.IMAGES] == len(rows) == len(files)
    assert roc_auc_score(y, p) == pytest.approx(m[names.TEST_AUC], abs=1e-9)
    version = client.get_model_version(names.MODEL_NAME, run.data.tags[names.TAG_MODEL_VERSION])
    threshold = float(version.tags[names.THRESHOLD])
    tn, fp, fn, tp = confusion_matrix(y, (p >= threshold).astype(int), labels=[0, 1]).ravel()
    assert m[names.TEST_SENSITIVITY] == pytest.approx(tp / (tp + fn)) and m[names.TEST_SPECIFICITY] == pytest.approx(
        tn / (tn + fp))
    model = mlflow.pyfunc.load_model(f"models:/{names.MODEL_NAME}/{version.version}")
    own = model.predict(pd.DataFrame({"image": [(external / r[path_]).read_bytes() for r in rows]}))
    np.testing.assert_allclose(p, own["probability"].to_numpy(), rtol=0, atol=1e-6)  # file by file, not reshuffled


def _with_unreadable(src: Path, dst: Path, classes=("NORMAL", "PNEUMONIA")) -> dict[str, str]:
    """Copy src (NORMAL/, PNEUMONIA/) to dst plus broken .jpeg files in `classes`; {relative path: reason}."""
    import shutil

    shutil.copytree(src, dst)
    bad = {}
    for name in classes:
        (dst / name / "zero.jpeg").write_bytes(b"")
        (dst / name / "notes.jpeg").write_text("patient notes, not a radiograph\n")
        bad[f"{name}/zero.jpeg"], bad[f"{name}/notes.jpeg"] = "empty", "not an image"
    return bad


@pytest.mark.slow
def test_evaluate_skips_and_reports_unreadable_files(store, external, tmp_path):
    folder = tmp_path / "with-broken"
    bad = _with_unreadable(external, folder)
    proc = _evaluate(store, folder, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped = {line.split(": ", 1)[0].removeprefix("  skipped "): line.split(": ", 1)[1]
               for line in proc.stderr.splitlines() if line.startswith("  skipped ")}
    assert skipped.keys() == bad.keys()
    assert all(reason in skipped[path] for path, reason in bad.items()), skipped
    client, run, rows = _recorded(store, proc.stdout)
    good = len(list(external.rglob("*.jpeg")))
    assert run.data.metrics[names.IMAGES] == len(rows) == good  # scored without them
    assert f"{good} images" in proc.stdout
    listed = Path(client.download_artifacts(run.info.run_id, f"{names.EVALUATION_DIR}/unreadable.txt")).read_text()
    assert {line.split("\t")[0] for line in listed.splitlines()} == set(bad)


@pytest.mark.slow
def test_evaluate_names_files_that_are_no_film_and_scores_the_rest(store, external, tmp_path):
    """A FIFO (it hung the index's hashing), /dev/zero and a 12 GB file (read whole before) among the films:
    each is one `skipped` line with its reason, unopened; the films are scored as without them."""
    from test_bad_input import special_files

    folder = tmp_path / "with-specials"
    bad = _with_unreadable(external, folder, classes=("NORMAL",))
    bad.update({f"PNEUMONIA/{name}": reason for name, reason in special_files(folder / "PNEUMONIA").items()
                if name != "folder.jpeg"})  # a folder in a class folder: not searched, as ever, and no file
    proc = run_pneumo(["evaluate", str(folder), "--bootstrap", "100"], tmp_path, hydra=False, check=False,
                      timeout=300, env_extra={"MLFLOW_TRACKING_URI": tracking_uri(store)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped = {line.split(": ", 1)[0].removeprefix("  skipped "): line.split(": ", 1)[1]
               for line in proc.stderr.splitlines() if line.startswith("  skipped ")}
    assert skipped.keys() == bad.keys(), skipped
    assert all(reason in skipped[path] for path, reason in bad.items()), skipped
    client, run, rows = _recorded(store, proc.stdout)
    assert run.data.metrics[names.IMAGES] == len(rows) == len(list(external.rglob("*.jpeg")))


@pytest.mark.slow
def test_evaluate_with_one_readable_class_is_one_error_naming_the_unreadable(store, external, tmp_path):
    """PNEUMONIA/ holds files, none readable: not both classes once they are left out, and the error says which."""
    import shutil

    folder = tmp_path / "pneumonia-unreadable"
    shutil.copytree(external / "NORMAL", folder / "NORMAL")
    (folder / "PNEUMONIA").mkdir()
    (folder / "PNEUMONIA" / "zero.jpeg").write_bytes(b"")
    (folder / "PNEUMONIA" / "notes.jpeg").write_text("patient notes, not a radiograph\n")
    client = client_for(store)
    before = len(client.search_runs([e.experiment_id for e in client.search_experiments()], ""))
    proc = _evaluate(store, folder, tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("pneumo evaluate: error: ")]
    assert len(error) == 1 and "not both classes: nothing to evaluate" in error[0], proc.stderr[-3000:]
    for name in ("PNEUMONIA/zero.jpeg", "PNEUMONIA/notes.jpeg"):  # the reader is told which files were left out
        assert name in proc.stderr, proc.stderr[-3000:]
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()], "")) == before
