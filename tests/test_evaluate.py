"""evaluate: threshold policies, metrics against hand counts, patient bootstrap, report files."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn import metrics as skm

from pneumo.evaluation import plots, scoring
from pneumo.evaluation import stats as ev
from pneumo.record import names
from pneumo.record.names import TEST_METRICS, THRESHOLD, ci_names

import toy_model


def synthetic(n_patients=150, per_patient=4, seed=0, signal=0.3):
    """Patients with several images each; probabilities noisy around the label."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n_patients), per_patient)
    y = np.repeat(rng.random(n_patients) < 0.7, per_patient).astype(int)
    p = np.clip(0.5 + signal * (2 * y - 1) + rng.normal(0, 0.25, len(y)), 0, 1)
    return y, p, patients


def test_youden_picks_the_known_best_cut():
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.7, 0.4, 0.5, 0.8, 0.85, 0.9])
    # J = tpr - fpr: at 0.8 -> 3/5 - 0; at 0.5 -> 4/5 - 1/5; at 0.4 -> 1 - 1/5 (the best)
    assert ev.choose_threshold(y, p, "youden") == pytest.approx(0.4)


def test_sensitivity_policy_meets_target_with_the_highest_cut():
    y, p, _ = synthetic(seed=1)
    for target in (0.8, 0.95, 1.0):
        t = ev.choose_threshold(y, p, "sensitivity", target_sensitivity=target)
        assert ev.score(y, p, t)["test_sensitivity"] >= target
        higher = p[p > t]
        if len(higher):  # the next score up misses the target
            assert ev.score(y, p, higher.min())["test_sensitivity"] < target
    assert 0 <= ev.choose_threshold(y, p) <= 1


def test_threshold_errors_and_degenerate_validation():
    with pytest.raises(ValueError, match="evaluation.threshold.*youden, sensitivity"):
        ev.choose_threshold([0, 1], [0.2, 0.8], policy="f1")
    with pytest.warns(UserWarning, match="one class"):
        assert ev.choose_threshold([1, 1, 1], [0.2, 0.5, 0.9]) == 0.5


def test_score_matches_hand_counts():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 1, 0, 1])
    p = np.array([0.9, 0.8, 0.4, 0.6, 0.7, 0.2, 0.1, 0.55, 0.3, 0.35])
    s = ev.score(y, p, 0.5)
    tp, fn, fp, tn = 4, 2, 1, 3  # by hand at threshold 0.5
    assert set(s) == set(TEST_METRICS)
    assert s["test_sensitivity"] == pytest.approx(tp / (tp + fn))
    assert s["test_specificity"] == pytest.approx(tn / (tn + fp))
    assert s["test_precision"] == pytest.approx(tp / (tp + fp))
    assert s["test_npv"] == pytest.approx(tn / (tn + fn))
    assert s["test_accuracy"] == pytest.approx(0.7)
    assert s["test_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert s["test_brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert s["test_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    # nothing predicted positive: precision undefined, not a crash
    nothing = ev.score(y, p, 1.01)
    assert np.isnan(nothing["test_precision"]) and nothing["test_sensitivity"] == 0


def test_vectorised_resample_equals_sklearn_weighted():
    """The bootstrap's own metric code agrees with scikit-learn on weighted data."""
    y, p, patients = synthetic(seed=2)
    p = p.round(2)  # ties
    rs = ev._Resampler(y, p, patients, 0.5)
    counts = rs.draw(1, np.random.default_rng(0))
    w = counts[0][patients]
    got = rs.metrics(counts)
    assert got["test_auc"][0] == pytest.approx(skm.roc_auc_score(y, p, sample_weight=w))
    assert got["test_auprc"][0] == pytest.approx(skm.average_precision_score(y, p, sample_weight=w))
    assert got["test_brier"][0] == pytest.approx(skm.brier_score_loss(y, p, sample_weight=w))
    ones = rs.metrics(np.ones((1, rs.n_patients)))
    for name, value in ev.score(y, p, 0.5).items():
        assert ones[name][0] == pytest.approx(value)


def test_cis_contain_the_point_and_shrink_with_more_patients():
    small = ev.evaluate(*synthetic(n_patients=60, seed=3), 0.5, bootstrap=500)
    large = ev.evaluate(*synthetic(n_patients=600, seed=3), 0.5, bootstrap=500)
    assert large[THRESHOLD] == 0.5
    for name in TEST_METRICS:
        low, high = ci_names(name)
        assert small[low] <= small[name] <= small[high], name
        assert large[high] - large[low] < small[high] - small[low], name


def test_bootstrap_resamples_whole_patients():
    """Copies of one image per patient add no information: the CI must not narrow."""
    y, p, patients = synthetic(n_patients=200, per_patient=1, seed=4)
    one = ev.evaluate(y, p, patients, 0.5, bootstrap=1000)
    tiled = ev.evaluate(np.repeat(y, 5), np.repeat(p, 5), np.repeat(patients, 5), 0.5, bootstrap=1000)
    image_level = ev.evaluate(np.repeat(y, 5), np.repeat(p, 5), np.arange(1000), 0.5, bootstrap=1000)
    width = lambda r: r["test_auc_ci_high"] - r["test_auc_ci_low"]  # noqa: E731
    assert width(tiled) == pytest.approx(width(one), rel=0.15)
    assert width(image_level) < 0.7 * width(tiled)  # what a leaky image-level bootstrap would claim


def test_bootstrap_is_vectorised_not_a_loop_over_resamples(monkeypatch):
    """What keeps 1000 resamples cheap, counted rather than timed (a shared runner's clock
    says nothing; speed is measured in benchmarks/): one scikit-learn pass for the point
    estimates and one matrix pass per block of resamples, never one call per resample."""
    y, p, patients = synthetic(n_patients=200, per_patient=3, seed=5)
    calls = {"roc_auc_score": 0, "blocks": 0, "resamples": 0}
    roc_auc, block = ev.skm.roc_auc_score, ev._Resampler.metrics

    def counting_auc(*args, **kwargs):
        calls["roc_auc_score"] += 1
        return roc_auc(*args, **kwargs)

    def counting_block(self, counts):
        calls["blocks"] += 1
        calls["resamples"] += len(counts)
        return block(self, counts)

    monkeypatch.setattr(ev.skm, "roc_auc_score", counting_auc)
    monkeypatch.setattr(ev._Resampler, "metrics", counting_block)
    out = ev.evaluate(y, p, patients, 0.5, bootstrap=1000)
    assert calls == {"roc_auc_score": 1, "blocks": -(-1000 // ev._BLOCK), "resamples": 1000}
    assert out["test_auc_ci_low"] < out["test_auc"] < out["test_auc_ci_high"]


def test_paired_bootstrap():
    y, p_a, patients = synthetic(seed=6, signal=0.1)
    _, p_b, _ = synthetic(seed=6, signal=0.3)  # same labels and noise, stronger signal
    better = ev.paired_bootstrap(y, p_a, p_b, patients, "test_auc", 0.5, 0.5)
    assert better.delta > 0 and better.ci_low > 0 and better.p_value < 0.05
    same = ev.paired_bootstrap(y, p_a, p_a.copy(), patients, "test_auc", 0.5, 0.5)
    assert same.delta == 0 and not same.ci_low > 0 and same.p_value == 1.0
    # lower is better for brier: b improves means a negative delta, and a small p
    brier = ev.paired_bootstrap(y, p_a, p_b, patients, "test_brier", 0.5, 0.5)
    assert brier.delta < 0 and brier.ci_high < 0 and brier.p_value < 0.05
    with pytest.raises(ValueError):
        ev.paired_bootstrap(y, p_a, p_b, patients, "val_auc", 0.5, 0.5)


def test_write_report(tmp_path):
    y, p, _ = synthetic(n_patients=40, seed=7)
    history = {"loss": [0.7, 0.5, 0.4], "val_loss": [0.7, 0.6, 0.55], "auc": [0.6, 0.8, 0.9], "val_auc": [0.6, 0.7, 0.75]}
    paths = plots.write_report(tmp_path / "eval", y, p, 0.4, history=history)
    names = {path.name for path in paths}
    assert names == {
        "confusion_matrix.png", "confusion_matrix.json", "roc.png", "pr.png", "calibration.png",
        "classification_report.txt", "training_curves.png",
    }
    assert all(path.stat().st_size > 0 for path in paths)
    cm = json.loads((tmp_path / "eval" / "confusion_matrix.json").read_text())
    assert cm["labels"] == ["NORMAL", "PNEUMONIA"] and cm["threshold"] == 0.4
    assert cm["matrix"] == skm.confusion_matrix(y, (p >= 0.4).astype(int)).tolist()
    assert "PNEUMONIA" in (tmp_path / "eval" / "classification_report.txt").read_text()
    assert "training_curves.png" not in {x.name for x in plots.write_report(tmp_path / "b", y, p, 0.4)}


def test_a_model_is_scored_with_every_evaluation_setting_it_is_given(tmp_path, capsys):
    """scoring.validate / on_test on the toy model: the threshold policy and its target, the bootstrap's
    size, confidence and seed all reach the numbers; without the bootstrap the test metrics are still there."""
    model, splits = toy_model.splits(tmp_path, n_val=40, n_test=30, test_levels=(60, 200))
    setting = SimpleNamespace(threshold="sensitivity", target_sensitivity=0.8, bootstrap=50, confidence=0.8, seed=3,
                              refer=None)
    validated = scoring.validate(model, splits, setting, batch_size=8)
    p_val = model.predict(splits.val.x, verbose=0).reshape(-1)
    assert validated.threshold == ev.choose_threshold(splits.val.y, p_val, "sensitivity", 0.8)
    assert validated.threshold != ev.choose_threshold(splits.val.y, p_val, "sensitivity", 0.95)
    assert validated.metrics[names.MODEL_VAL_AUC] == ev.auc(splits.val.y, p_val)
    scored = scoring.on_test(model, splits, setting, 8, validated)
    p_test = model.predict(splits.test.x, verbose=0).reshape(-1)
    want = ev.evaluate(splits.test.y, p_test, splits.test.patients, validated.threshold, bootstrap=50,
                       confidence=0.8, seed=3)
    for name in (names.TEST_AUC, *names.ci_names(names.TEST_SENSITIVITY), *names.ci_names(names.TEST_SPECIFICITY)):
        assert scored.metrics[name] == want[name], name
    plain = scoring.score_model(model, splits, setting, 8, bootstrap=False)
    assert plain.metrics[names.TEST_AUC] == want[names.TEST_AUC] and names.ci_names(names.TEST_AUC)[0] not in plain.metrics
    assert names.ci_names(names.TEST_AUC)[0] in scoring.score_model(model, splits, setting, 8).metrics  # bootstrapped by default
    assert capsys.readouterr().out == ""  # no Keras progress bar in the job's log
