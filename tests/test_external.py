"""An external test set, first-class: data.test_root as a job's test split, `pneumo evaluate` after the fact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import TOY, client_for, run_pneumo, tracking_uri
from store_fixture import smoke_store  # noqa: F401

from pneumo.record import names
from pneumo.data import DataError, load
from pneumo.data import synthetic
from pneumo.data.loader import labels_digest


@pytest.fixture(scope="module")
def external(tmp_path_factory) -> Path:
    """A labelled folder from another 'collection' (another seed, its own file names): NORMAL/, PNEUMONIA/."""
    made = synthetic.generate(tmp_path_factory.mktemp("gen") / "set", n_images=40, image_px=48, seed=11)
    out = tmp_path_factory.mktemp("ext") / "external"
    for i, f in enumerate(sorted(made.rglob("*.jpeg"))):
        (out / f.parent.name).mkdir(parents=True, exist_ok=True)
        (out / f.parent.name / f"site2-{i:03d}.jpeg").write_bytes(f.read_bytes())
    return out


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
def test_evaluate_records_a_run_under_the_versions_job(smoke_store, external, tmp_path):  # noqa: F811
    env = {"MLFLOW_TRACKING_URI": tracking_uri(smoke_store)}
    proc = run_pneumo(["evaluate", str(external), "--model", f"models:/{names.MODEL_NAME}@{names.CHAMPION}",
                       "--bootstrap", "100"], tmp_path, env_extra=env, hydra=False)
    assert "test_auc" in proc.stdout and "recorded as run" in proc.stdout
    client = client_for(smoke_store)
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


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["{tmp}/nowhere"], "does not exist"),
    (["{tmp}", "--model", "models:/pneumonia-classifier/99"], "cannot use models:/pneumonia-classifier/99"),
    (["{tmp}", "--model", "runs:/abc/model"], "not a registered version"),
])
def test_evaluate_bad_input_is_one_line_and_exit_2(smoke_store, tmp_path, args, message):  # noqa: F811
    env = {"MLFLOW_TRACKING_URI": tracking_uri(smoke_store)}
    proc = run_pneumo(["evaluate", *[a.format(tmp=tmp_path) for a in args]], tmp_path, env_extra=env, hydra=False,
                      check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
