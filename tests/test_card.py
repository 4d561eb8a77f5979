"""The model card says what a reviewer needs, and its history stays within MLflow's 5,000 characters.

Fast: the card rendered from a composed config and hand-made splits; appending against a real
sqlite registry. The card of real jobs (every model family), promote's and evaluate's entries
included, is checked in tests/test_review.py.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from pneumo.config import paths, schema
from pneumo.data.base import Splits, Subset
from pneumo.record import names
from pneumo.record.client import Store
from pneumo.record.jobs import JobRecord
from pneumo.release import card
from pneumo.release.registry import Registered


def _subset(n_normal: int, n_pneumonia: int, prefix: str) -> Subset:
    n = n_normal + n_pneumonia
    return Subset(x=np.zeros((n, 8, 8, 1), np.uint8), y=np.array([0] * n_normal + [1] * n_pneumonia),
                  patients=np.array([f"{prefix}{i // 2}" for i in range(n)]),
                  hashes=np.array([f"{prefix}h{i}" for i in range(n)]), paths=np.array([f"{prefix}/{i}" for i in range(n)]))


def _job(*overrides, shared_patient=False):
    schema.register()
    with initialize_config_dir(config_dir=str(paths.CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["model=resnet", *overrides])
    test = _subset(3, 5, "te")
    if shared_patient:
        test.patients[0] = "tr0"
    splits = Splits(train=_subset(10, 30, "tr"), val=_subset(2, 6, "va"), test=test, digest="d" * 64,
                    test_digest="t" * 64, image_size=32, root="/data/chest_xray", skipped=(),
                    test_source="/elsewhere/hospital-b" if cfg.data.test_root else "carved from train")
    top = [SimpleNamespace(trial_id="03", hyperparameters=SimpleNamespace(values={"model.filters": 32,
                                                                                 "optimizer.learning_rate": 0.00123456}))]
    results = {name: 0.8 for name in names.TEST_METRICS}
    for name in names.TEST_METRICS:
        results[names.ci_names(name)[0]], results[names.ci_names(name)[1]] = 0.7, 0.9
    return cfg, splits, top, results


def render(cfg, splits, top, threshold, results, version, run_id):
    """The card of version `version` of run `run_id`, whose search found `top` and whose model scored `results`."""
    return card.render(cfg, splits, SimpleNamespace(best=top[0], top=top),
                       SimpleNamespace(threshold=threshold, metrics=results), Registered(run_id, version))


def test_card_holds_data_training_threshold_metrics_use_and_limits():
    cfg, splits, top, results = _job()
    text = render(cfg, splits, top, 0.4123, results, "7", "run123")
    for expected in (
        "# pneumonia-classifier version 7", "run123",
        "## Intended use", "screening aid", "children", "Not a diagnosis",
        "synthetic stand-in", "data digest `dddddddddddddddd`", "test digest `tttttttttttttttt`",
        "| train | 10 | 30 | 20 |", "| val | 2 | 6 | 4 |", "| test | 3 | 5 | 4 |",
        "patient-disjoint: yes", "test split: internal: `carved from train`",
        "pneumo.model.builders.resnet", "keras.optimizers.RMSprop", "searched: filters",
        "best trial `03`", "`optimizer.learning_rate=0.001235`",
        "0.4123: the highest threshold whose validation sensitivity is at least 0.95 (policy `sensitivity`)",
        "## Test metrics (internal test split, 8 films, 4 patients)", "| test_auc | 0.800 | [0.700, 0.900] |",
        "## Known limits", "Single centre", "Pediatric only", "Train/test shift", "likely overstates",
    ):
        assert expected in text, expected
    assert len(text) < card.MAX_CHARS - 1000  # room for the history promote and evaluate append


def test_card_says_when_the_test_split_is_external_or_patients_leak():
    cfg, splits, top, results = _job("data.test_root=/elsewhere/hospital-b", "evaluation.threshold=youden",
                                     shared_patient=True)
    text = render(cfg, splits, top, 0.5, results, "1", "r")
    assert "test split: **external** folder: `/elsewhere/hospital-b`" in text
    assert "## Test metrics (external test split" in text and "tested on an external folder" in text
    assert "maximising sensitivity + specificity - 1 (policy `youden`)" in text
    assert "patient-disjoint: **NO**: 1 patient(s)" in text


def test_history_keeps_the_card_and_the_newest_entries_within_mlflows_limit(tmp_path):
    import mlflow

    client = mlflow.MlflowClient(paths.local_tracking_uri(tmp_path))
    client.create_registered_model(names.MODEL_NAME)
    mv = client.create_model_version(names.MODEL_NAME, "file:///nowhere")
    head = "# card\n\n" + "x" * 3000 + "\n"
    client.update_model_version(names.MODEL_NAME, mv.version, description=head)
    for i in range(12):
        card.append(Store(client.tracking_uri), mv.version, f"### entry {i}\n\n- " + "y" * 300)
    text = client.get_model_version(names.MODEL_NAME, mv.version).description
    assert len(text) <= card.MAX_CHARS and text.startswith(head.rstrip())
    kept = [i for i in range(12) if f"### entry {i}\n" in text]
    assert kept == list(range(12 - len(kept), 12)) and 3 <= len(kept) < 12  # the newest, in order
    assert f"_({12 - len(kept)} earlier entries dropped" in text


@pytest.mark.parametrize("promoted, forced", [(True, False), (False, False), (True, True)])
def test_a_decision_entry_names_the_verdict_every_gate_and_the_reason(promoted, forced):
    from pneumo.release.promote import Decision

    reasons = ["FAIL: test_sensitivity 0.5 below 0.9", "pass: run r status FINISHED", "skipped: version 9 (...)"]
    d = Decision(promoted, "3", "2" if promoted else None, reasons, {}, forced=forced)
    text = card.decision_entry(d, "reviewed by Dr. A" if forced else None)
    assert text.startswith("### ") and ("promoted" if promoted else "refused") in text.splitlines()[0]
    assert "- FAIL: test_sensitivity 0.5 below 0.9" in text and "- pass: run r status FINISHED" in text
    assert "version 9" not in text  # other versions' skips belong to their own cards
    assert ("reason given: reviewed by Dr. A" in text) == forced
    assert ("version 2 became `previous`" in text) == promoted


def test_history_keeps_its_entries_when_the_card_is_long():
    """Past MLflow's 5,000 characters the card's last sections give way to History, not the decisions."""
    from pneumo.release.card import MAX_CHARS, REST, _fit

    head = "# v1\n\n" + "".join(f"## {name}\n\n{'x' * 600}\n\n" for name in
                                 ("Intended use", "Data", "Training", "Threshold", "Test metrics", "When", "Known limits"))
    entries = [f"### promoted\n\n{'p' * 700}", f"### external evaluation\n\n{'e' * 700}"]
    text = _fit(head, list(entries))
    assert len(text) <= MAX_CHARS and all(e in text for e in entries)
    assert text.startswith(head[:head.index("## When")].rstrip()) and REST in text and "## Known limits" not in text
    assert _fit(text[:text.index("## History")], list(entries)).count(REST) == 1  # a later append adds no second one


def test_the_card_at_registration_is_the_runs_artifact_and_the_versions_description_scrubbed(tmp_path):
    import mlflow

    client = mlflow.MlflowClient(paths.local_tracking_uri(tmp_path))
    run = client.create_run(client.create_experiment("s", artifact_location=(tmp_path / "a").as_uri()))
    client.create_registered_model(names.MODEL_NAME)
    mv = client.create_model_version(names.MODEL_NAME, "file:///nowhere", run.info.run_id)
    text = "# card\n\ndata: http://pneumo:hunter2@nas/films\n" + "x" * (card.MAX_CHARS + 100)
    card.record(JobRecord(Store(client.tracking_uri), run.info.experiment_id, run.info.run_id), mv.version, text)
    logged = (Path(client.download_artifacts(run.info.run_id, names.CARD_ARTIFACT, str(tmp_path)))).read_text()
    assert "hunter2" not in logged and "http://pneumo:***@nas/films" in logged and len(logged) > card.MAX_CHARS
    described = client.get_model_version(names.MODEL_NAME, mv.version).description
    assert described.startswith("# card\n\ndata: http://pneumo:***@nas/films\n") and len(described) <= card.MAX_CHARS
