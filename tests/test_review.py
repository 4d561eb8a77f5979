"""What a reviewer opens after a sweep, for every model family: heatmaps, error gallery, model card,
system metrics; promote and evaluate add to the card.

One real multirun (`pneumo train -m model=cnn,resnet,transfer` at toy size, transfer's
MobileNetV2 at its 32 px minimum) into a sqlite store in tmp, then the real `pneumo promote`
and `pneumo evaluate` commands against it.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from pneumo.record import names

from helpers import TOY, client_for, run_pneumo, tracking_uri
from store_fixture import built_once, copy_store

pytestmark = pytest.mark.slow
FAMILIES = ("cnn", "resnet", "transfer")


def _build(tmp: Path) -> None:
    toy = [o for o in TOY if not o.startswith("evaluation.heatmaps")]  # the default grid, drawn
    run_pneumo(["train", "-m", "model=" + ",".join(FAMILIES), *toy, "experiment=review",
                "tracking.system_metrics_interval=1"], tmp)


@pytest.fixture(scope="module")
def review(tmp_path_factory):
    """The three jobs, trained once per test run (read-only here: the test that promotes copies them)."""
    tmp = built_once(tmp_path_factory, "review", _build)
    return tmp, *_jobs(tmp)


def _jobs(tmp: Path):
    client = client_for(tmp)
    exp = client.get_experiment_by_name("review")
    jobs = {j.data.params["model._target_"].rsplit(".", 1)[1]: j
            for j in client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'")}
    assert sorted(jobs) == sorted(FAMILIES) and all(j.info.status == "FINISHED" for j in jobs.values())
    return client, jobs


def _text(client, run_id: str, path: str) -> str:
    return Path(client.download_artifacts(run_id, path)).read_text()


def _version(client, job):
    (mv,) = client.search_model_versions(f"name='{names.MODEL_NAME}' and run_id='{job.info.run_id}'")
    return mv


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_logs_its_heatmap_grid_and_error_gallery(review, family):
    _, client, jobs = review
    job = jobs[family]
    arts = {a.path for a in client.list_artifacts(job.info.run_id, "evaluation")}
    assert {"evaluation/heatmaps.png", "evaluation/heatmaps.json", "evaluation/error_gallery.png",
            "evaluation/errors.csv"} <= arts
    for name in ("heatmaps.png", "error_gallery.png"):
        with Image.open(client.download_artifacts(job.info.run_id, f"evaluation/{name}")) as im:
            assert im.format == "PNG" and min(im.size) >= 300, (name, im.size)
    threshold = job.data.metrics[names.THRESHOLD]
    # The gallery's list is every test error of this job, no more, most confident first.
    cm = json.loads(_text(client, job.info.run_id, "evaluation/confusion_matrix.json"))["matrix"]
    errors = list(csv.DictReader(_text(client, job.info.run_id, "evaluation/errors.csv").splitlines()))
    assert len(errors) == cm[0][1] + cm[1][0]
    margins = [abs(float(e["probability"]) - threshold) for e in errors]
    assert all(a >= b - 1e-6 for a, b in zip(margins, margins[1:]))  # CSV probabilities have 6 decimals
    assert all(float(e["threshold"]) == pytest.approx(threshold, abs=1e-6) and e["patient"] for e in errors)  # 6 decimals
    # The grid shows films of each outcome this job had, each in its right column.
    grid = json.loads(_text(client, job.info.run_id, "evaluation/heatmaps.json"))["films"]
    counts = {"TN": cm[0][0], "FP": cm[0][1], "FN": cm[1][0], "TP": cm[1][1]}
    assert {f["outcome"] for f in grid} == {k for k, n in counts.items() if n}
    for f in grid:
        assert f["y_true"] == (f["outcome"] in ("TP", "FN"))
        if abs(f["probability"] - threshold) > 1e-6:  # an untrained frozen backbone scores all films alike
            assert (f["probability"] >= threshold) == (f["outcome"] in ("TP", "FP")), f


@pytest.mark.parametrize("family", FAMILIES)
def test_every_version_has_a_card_in_the_registry_and_in_its_run(review, family):
    _, client, jobs = review
    job = jobs[family]
    mv = _version(client, job)
    text = mv.description
    assert text == _text(client, job.info.run_id, names.CARD_ARTIFACT)  # as written at registration
    m, tags, params = job.data.metrics, job.data.tags, job.data.params
    for expected in (f"version {mv.version}", job.info.run_id, "## Intended use", "Not a diagnosis",
                     f"data digest `{tags[names.TAG_DATA_DIGEST][:16]}`",
                     f"test digest `{tags[names.TAG_TEST_DIGEST][:16]}`", "patient-disjoint: yes",
                     f"pneumo.model.builders.{family}", f"best trial `{tags[names.TAG_BEST_TRIAL]}`",
                     f"{m[names.THRESHOLD]:.4f}: the highest threshold whose validation sensitivity is at least 0.95",
                     f"| test_auc | {m[names.TEST_AUC]:.3f} | [{m['test_auc_ci_low']:.3f}, {m['test_auc_ci_high']:.3f}]",
                     "## Known limits", "Pediatric only", "Synthetic data"):
        assert expected in text, expected
    for key in (k for k in params if k.startswith(names.BEST_HP_PREFIX)):
        assert f"`{key.removeprefix(names.BEST_HP_PREFIX)}=" in text, key
    n_test = len(_text(client, job.info.run_id, names.PREDICTIONS_ARTIFACT).splitlines()) - 1
    normal, pneumonia, _ = map(int, re.search(r"\| test \| (\d+) \| (\d+) \| (\d+) \|", text).groups())
    assert normal + pneumonia == n_test


def test_each_job_run_records_cpu_and_memory_and_trials_do_not(review):
    _, client, jobs = review
    for family, job in jobs.items():
        history = client.get_metric_history(job.info.run_id, "system/cpu_utilization_percentage")
        assert history and all(0 <= h.value <= 100 * 64 for h in history), family
        assert client.get_metric_history(job.info.run_id, "system/system_memory_usage_megabytes")
        (trial,) = client.search_runs([job.info.experiment_id], f"tags.`{names.PARENT_RUN_ID}` = '{job.info.run_id}' "
                                      f"and tags.`{names.TAG_ROLE}` = '{names.ROLE_TRIAL}'")  # not the evaluation runs
        assert not [k for k in trial.data.metrics if k.startswith("system/")]


def test_promote_and_evaluate_append_to_the_card_the_artifact_stays(review, tmp_path):
    from pneumo.data import synthetic

    tmp = copy_store(review[0], tmp_path / "review")
    client, jobs = _jobs(tmp)
    mv = _version(client, jobs["cnn"])
    at_registration = mv.description
    artifact = _text(client, jobs["cnn"].info.run_id, names.CARD_ARTIFACT)  # the copy's paths: copy_store rewrote the db's
    env = {"MLFLOW_TRACKING_URI": tracking_uri(tmp)}
    proc = run_pneumo(["promote", "--dry-run", "--version", str(mv.version), "--min-sensitivity", "0"], tmp, env, False,
                      hydra=False)
    assert client.get_model_version(names.MODEL_NAME, mv.version).description == at_registration  # dry run
    proc = run_pneumo(["promote", "--version", str(mv.version), "--force", "--reason", "card test: toy data"], tmp, env,
                      hydra=False)
    text = client.get_model_version(names.MODEL_NAME, mv.version).description
    # the card down to its test metrics stays; later sections may give way to History (the artifact keeps them)
    assert text.startswith(at_registration[:at_registration.index("## Test metrics")]) and "## History" in text
    entry = text[text.index("## History"):]
    assert "promoted" in entry and "for `champion`" in entry and "reason given: card test: toy data" in entry
    printed = [line.strip().removeprefix("- ") for line in proc.stdout.splitlines() if line.strip().startswith("- ")]
    gates = [g for g in printed if g.startswith(("pass:", "FAIL:"))]
    assert gates and all(f"- {g}" in entry for g in gates)  # every gate promote printed, on the card

    hospital = synthetic.generate(tmp / "hospital-b", n_images=24, image_px=48, seed=5)
    run_pneumo(["evaluate", str(hospital), "--model", f"models:/{names.MODEL_NAME}/{mv.version}",
                "--bootstrap", "50"], tmp, env, hydra=False)
    text = client.get_model_version(names.MODEL_NAME, mv.version).description
    ev = client.search_runs([jobs["cnn"].info.experiment_id], f"tags.`{names.TAG_ROLE}` = '{names.ROLE_EVALUATION}' "
                            f"and tags.`{names.PARENT_RUN_ID}` = '{jobs['cnn'].info.run_id}'")
    assert len(ev) == 1 and ev[0].data.tags[names.PARENT_RUN_ID] == jobs["cnn"].info.run_id
    assert f"external evaluation on `{hospital}" in text and ev[0].info.run_id in text
    assert f"| test_auc | {ev[0].data.metrics['test_auc']:.3f} |" in text
    assert text.index("UTC: promoted") < text.index("UTC: external evaluation on")  # in the order they happened
    assert _text(client, jobs["cnn"].info.run_id, names.CARD_ARTIFACT) == artifact
