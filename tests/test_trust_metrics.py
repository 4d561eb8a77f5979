"""Issue 19, fast: sensitivity per pneumonia subtype (metrics, card, compare, promote's warning) and the
referral band (chosen on validation, reported on test, drawn), on hand-made numbers and Kermany names."""

from __future__ import annotations

from types import SimpleNamespace

import mlflow
import numpy as np
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from mlflow.entities import Metric

from pneumo.config import paths, schema
from pneumo.data.base import Splits, Subset
from pneumo.evaluation import referral, scoring, subgroups
from pneumo.record import names

from helpers import empty_store

VIRUS = names.subtype_metric(names.TEST_SENSITIVITY, "virus")
BACTERIA = names.subtype_metric(names.TEST_SENSITIVITY, "bacteria")


def _subset(n: int, seed: int) -> Subset:
    """Kermany-named films: a third NORMAL, then bacteria and virus patients (two films each)."""
    rng = np.random.default_rng(seed)
    kinds = np.array(["normal", "bacteria", "virus"])[np.arange(n) // 2 % 3]
    y = (kinds != "normal").astype(int)
    paths_ = [f"PNEUMONIA/person{i // 2}_{k}_{i}.jpeg" if k != "normal" else f"NORMAL/IM-{i // 2:04d}-{i:04d}.jpeg"
              for i, k in enumerate(kinds)]
    patients = np.array([f"{k}{i // 2}" for i, k in enumerate(kinds)])
    # the model sees bacteria well and virus poorly
    p = np.where(kinds == "normal", rng.uniform(0, .4, n), np.where(kinds == "bacteria", rng.uniform(.5, 1, n),
                                                                      rng.uniform(.2, .8, n)))
    return Subset(x=p.reshape(n, 1, 1, 1), y=y, patients=patients, hashes=np.array([f"h{seed}-{i}" for i in range(n)]),
                  paths=np.array(paths_))


class _Echo:
    """A stand-in model: its 'films' are their own probabilities."""

    def predict(self, x, batch_size=None, verbose=0):
        return np.asarray(x, float).reshape(-1, 1)


def group(name: str, option: str = "default", *overrides: str):
    """One config group's YAML as values (its schema and defaults list left out), with dotted overrides:
    the real conf/ without composing the whole config (other groups may be mid-edit)."""
    from omegaconf import OmegaConf

    node = OmegaConf.load(paths.CONF_DIR / name / f"{option}.yaml")
    node.pop("defaults", None)
    return OmegaConf.merge(node, OmegaConf.from_dotlist(list(overrides)))


def _evaluation(*overrides):
    return group("evaluation", "default", "bootstrap=200", *overrides)


def _splits():
    return Splits(train=_subset(60, 0), val=_subset(120, 1), test=_subset(180, 2), digest="d", test_digest="t",
                  image_size=1, root="/nowhere", skipped=())


def test_sensitivity_is_reported_per_subtype_with_patient_bootstrap_cis():
    scored = scoring.score_model(_Echo(), _splits(), _evaluation("threshold=youden"), 32)
    m = scored.metrics
    for name in (BACTERIA, VIRUS):
        low, high = names.ci_names(name)
        assert m[low] <= m[name] <= m[high]
    assert m[BACTERIA] > m[VIRUS]  # the pooled number hides the weaker subtype
    assert min(m[BACTERIA], m[VIRUS]) <= m[names.TEST_SENSITIVITY] <= max(m[BACTERIA], m[VIRUS])
    assert names.subtype_metric(names.TEST_SPECIFICITY, "virus") not in m  # specificity stays the NORMAL films'


def test_no_subtype_metrics_when_the_names_carry_none():
    y, p = np.array([0, 1, 1, 1]), np.array([.1, .9, .8, .2])
    assert subgroups.subtype_metrics(y, p, np.arange(4), ["a.png", "b.png", "c.png", "d.png"], .5) == {}


def test_referral_band_is_chosen_on_validation_and_reported_on_test(tmp_path):
    splits = _splits()
    off = scoring.score_model(_Echo(), splits, _evaluation(), 32)
    assert off.band is None and names.TEST_COVERAGE not in off.metrics
    on = scoring.score_model(_Echo(), splits, _evaluation("refer=0.95"), 32)
    low, high = on.band
    assert low < on.threshold < high
    val = referral.decided_metrics(splits.val.y, splits.val.x.reshape(-1), on.threshold, on.band)
    assert val[names.TEST_DECIDED_ACCURACY] >= 0.95  # on validation, where it was chosen
    narrower = (on.threshold - (on.threshold - low) * 0.9, on.threshold + (high - on.threshold) * 0.9)
    assert referral.decided_metrics(splits.val.y, splits.val.x.reshape(-1), on.threshold, narrower)[
        names.TEST_DECIDED_ACCURACY] < 0.95  # and the narrowest one that gets there
    m = on.metrics
    assert 0 < m[names.TEST_COVERAGE] < 1 and m[names.REFER_LOW] == low
    assert m[names.TEST_DECIDED_ACCURACY] > m[names.TEST_ACCURACY]
    path = referral.write_curve(tmp_path, {"validation": (splits.val.y, splits.val.x.reshape(-1))}, on.band,
                                on.threshold)
    assert path.name == "coverage_accuracy.png" and path.stat().st_size > 1000


def test_card_and_compare_show_sensitivity_per_subtype_and_the_band():
    from pneumo.commands import table
    from pneumo.release import card

    schema.register()
    with initialize_config_dir(config_dir=str(paths.CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["evaluation.bootstrap=200", "evaluation.refer=0.95"])
    splits = _splits()
    scored = scoring.score_model(_Echo(), splits, cfg.evaluation, 32)
    from pneumo.commands.leaderboard import LeaderboardRow
    from pneumo.release.registry import Registered

    best = SimpleNamespace(trial_id="00", hyperparameters=SimpleNamespace(values={"model.blocks": 3}))
    evaluated = SimpleNamespace(threshold=scored.threshold, metrics=scored.metrics)
    text = card.render(cfg, splits, SimpleNamespace(best=best, top=[best]), evaluated, Registered("r" * 32, "1"))
    assert "| virus |" in text and "| bacteria |" in text and names.LABEL_REFER in text

    def row(metrics):
        return LeaderboardRow("r", "job", "s", "", "FINISHED", None, {}, metrics, *[None] * 2, (), *[None] * 7)

    virus = row({names.TEST_SENSITIVITY: 0.9, VIRUS: 0.7, names.ci_names(VIRUS)[0]: 0.5, names.ci_names(VIRUS)[1]: 0.85})
    columns = table.table_columns(names.TEST_AUC, [virus])
    assert table.SUBTYPE_COLUMN in columns
    assert table._subtypes(virus) == "virus 0.700 [0.500, 0.850]"
    assert table.SUBTYPE_COLUMN not in table.table_columns(names.TEST_AUC, [row({names.TEST_SENSITIVITY: 0.9})])


class _Const(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def test_promote_names_a_subtype_below_the_floor_as_a_warning_not_a_refusal(tmp_path, monkeypatch):
    from pneumo.record.client import Store
    from pneumo.release import promote

    uri = empty_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    c = MlflowClient(uri)
    exp = c.create_experiment("s", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = c.create_run(exp, tags={names.TAG_ROLE: names.ROLE_JOB, names.TAG_TEST_DIGEST: "t"}).info.run_id
    low, high = names.ci_names(names.TEST_AUC)
    metrics = {names.TEST_AUC: 0.9, low: 0.85, high: 0.95, names.TEST_SENSITIVITY: 0.95,
               names.TEST_SPECIFICITY: 0.8, BACTERIA: 0.97, VIRUS: 0.82, names.ci_names(VIRUS)[0]: 0.7,
               names.ci_names(VIRUS)[1]: 0.93, names.THRESHOLD: 0.5}
    c.log_batch(run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(name="model", python_model=_Const(), pip_requirements=["mlflow"])
    c.set_terminated(run_id)
    mv = mlflow.register_model(info.model_uri, names.MODEL_NAME)
    c.update_model_version(names.MODEL_NAME, mv.version, description="card")
    try:
        d = promote.promote(store=Store(c.tracking_uri))
    finally:
        mlflow.set_tracking_uri(None)
    assert d.promoted
    warned = [r for r in d.reasons if r.startswith("WARNING:")]
    assert len(warned) == 1 and VIRUS in warned[0] and "0.7" in warned[0], d.reasons
    assert BACTERIA not in " ".join(d.reasons)
    assert f"WARNING: {VIRUS}" in d.summary()
