"""The champion gate and promote's refusals pinned at their lines (issue 27): the paired bootstrap's
lower CI bound of the improvement (upper, for a lower-is-better metric) against 0, never its point
difference; the same test set; a threshold for the metrics that need one; the no-guard gate
through ranking, refusal and --force; the floors and the confidence as proportions.

A real sqlite store whose versions hold a job's numbers and test predictions (no model: the gates
never load one). Where only the numbers of the paired bootstrap matter, `paired_test` is replaced
by one returning chosen numbers; the real bootstrap decides the rest.
"""

from __future__ import annotations

import hashlib
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from pneumo.evaluation import stats
from pneumo.record import names
from pneumo.record.client import Store
from pneumo.record.jobs import JobRecord
from pneumo.release import gates, promote, registry

from helpers import empty_store

TINY = float(np.nextafter(0.0, 1.0))  # the smallest positive number: "just above zero"


def below(x: float) -> float:
    return float(np.nextafter(x, -np.inf))


def above(x: float) -> float:
    return float(np.nextafter(x, np.inf))


N_PATIENTS = 300


def make_test_set(seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.random(N_PATIENTS) < 0.7, 2).astype(int)
    patients = np.repeat([f"p{k}" for k in range(N_PATIENTS)], 2)
    hashes = [hashlib.sha256(f"img{i}".encode()).hexdigest() for i in range(len(y))]
    return y, patients, hashes, rng.normal(0, 1, len(y))


def scores(y, noise, signal):
    return 1 / (1 + np.exp(-(signal * (2 * y - 1) + noise)))


def job(c, exp, name, data, p, threshold=None, *, digest="T", drop=(), tags=None) -> str:
    """A finished job's run (its numbers and test predictions, as a job logs them) and its version;
    the threshold by default as the job's default policy picks it (validation sensitivity 0.95)."""
    y, patients, hashes, _ = data
    threshold = stats.choose_threshold(y, p, "sensitivity", 0.95) if threshold is None else threshold
    numbers = stats.evaluate(y, p, patients, threshold, bootstrap=200)
    numbers = {k: v for k, v in numbers.items() if k not in drop and names.finite(v) is not None}
    run_id = c.create_run(exp, run_name=name, tags={names.TAG_ROLE: names.ROLE_JOB, names.TAG_TEST_DIGEST: digest}
                          if digest else {names.TAG_ROLE: names.ROLE_JOB}).info.run_id
    c.log_batch(run_id, metrics=[Metric(k, v, 0, 0) for k, v in numbers.items()])
    registry.log_predictions(JobRecord(Store(c.tracking_uri), exp, run_id), hashes, patients, y, p)
    c.set_terminated(run_id, "FINISHED")
    version_tags = registry.version_tags(run_id, SimpleNamespace(digest="data", test_digest=digest or ""),
                                         SimpleNamespace(threshold=threshold, metrics=numbers, no_guard=None))
    version_tags = {k: v for k, v in {**version_tags, **(tags or {})}.items() if k not in drop and v != ""}
    return str(c.create_model_version(names.MODEL_NAME, f"runs:/{run_id}/model", run_id, tags=version_tags).version)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("decisions")
    c = MlflowClient(empty_store(root))
    exp = c.create_experiment("gates", artifact_location=(root / "artifacts").as_uri())
    c.create_registered_model(names.MODEL_NAME)
    data = make_test_set()
    y, noise = data[0], data[3]
    base = scores(y, noise, 1.0)
    jitter = np.random.default_rng(5).normal(0, 0.02, len(y))
    champ_threshold = stats.choose_threshold(y, base, "sensitivity", 0.95)
    v = {"champ": job(c, exp, "champ", data, base),
         # the champion's scores nudged: better by a hair on these images, by noise
         "noisy": job(c, exp, "noisy", data, np.clip(base + jitter + 0.001 * (2 * y - 1), 0, 1)),
         # the champion's very scores at a lower threshold: more sensitive on every resample
         "lower": job(c, exp, "lower", data, base, champ_threshold - 0.05),
         "plain": job(c, exp, "plain", data, scores(y, noise, 1.2)),
         "elsewhere": job(c, exp, "elsewhere", data, scores(y, noise, 1.2), digest="U"),
         "undigested": job(c, exp, "undigested", data, scores(y, noise, 1.2), digest=None),
         "undigested2": job(c, exp, "undigested2", data, scores(y, noise, 1.5), digest=None),
         "unthresholded": job(c, exp, "unthresholded", data, base, drop=(names.THRESHOLD,)),
         "unguarded": job(c, exp, "unguarded", data, scores(y, noise, 3.0),
                          tags={names.TAG_NO_GUARD: "1 training films: the guard needs at least 2 of each"})}
    return root, v


@pytest.fixture
def store(template, tmp_path, monkeypatch):
    import mlflow

    root, v = template
    shutil.copy(root / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    from pneumo.record import store as record_store

    yield MlflowClient(record_store.setup()), v
    mlflow.set_tracking_uri(None)


def job_metric(c, version: str, name: str) -> float:
    """A number the job of this version logged on its run."""
    return c.get_run(c.get_model_version(names.MODEL_NAME, version).run_id).data.metrics[name]


def crown(c, version):
    c.set_registered_model_alias(names.MODEL_NAME, names.CHAMPION, version)


def fails(d) -> list[str]:
    return [r[len("FAIL: "):] for r in d.reasons if r.startswith("FAIL: ")]


def paired(monkeypatch, delta, ci_low, ci_high):
    """promote's paired bootstrap replaced by these numbers (the gate reads them; the bootstrap is tested below)."""
    def fake(c, cand, champ, metric, thresholds, confidence):
        return {"delta": delta, "ci_low": ci_low, "ci_high": ci_high, "p_value": 0.01, "confidence": confidence,
                "n_images": 600, "n_patients": 300}, None
    monkeypatch.setattr(promote, "paired_test", fake)


@pytest.mark.parametrize("delta, ci_low, ci_high, won", [
    (0.02, 0.0, 0.04, False),  # a tie at the bound is not a win
    (0.02, TINY, 0.04, True),
    (0.02, below(0.0), 0.04, False),  # better by the point difference, not by its CI
    (0.0, TINY, 0.0, True),  # (impossible numbers) the gate reads the bound, not the point difference
])
def test_the_champion_gate_is_the_ci_lower_bound_of_the_improvement(store, monkeypatch, delta, ci_low, ci_high, won):
    c, v = store
    crown(c, v["champ"])
    paired(monkeypatch, delta, ci_low, ci_high)
    d = promote.promote(version=v["plain"], dry_run=True)
    assert d.promoted == won and d.numbers["ci_low"] == ci_low
    assert (fails(d) == []) == won
    if not won:
        assert fails(d)[0].endswith("no improvement shown (the CI must exclude 0; a tie is not a win)")


@pytest.mark.parametrize("delta, ci_low, ci_high, won", [
    (-0.02, -0.04, 0.0, False),
    (-0.02, -0.04, -TINY, True),
    (-0.02, -0.04, above(0.0), False),  # lower by the point difference, not by its CI
    (0.0, 0.0, -TINY, True),
])
def test_for_a_lower_is_better_metric_the_upper_bound_must_be_below_zero(store, monkeypatch, delta, ci_low,
                                                                            ci_high, won):
    c, v = store
    crown(c, v["champ"])
    paired(monkeypatch, delta, ci_low, ci_high)
    d = promote.promote(names.TEST_BRIER, version=v["plain"], dry_run=True)
    assert d.promoted == won, d.reasons


def test_better_by_noise_does_not_replace_the_champion(store):
    """The real paired bootstrap: a candidate whose point difference is positive and whose CI reaches below 0."""
    c, v = store
    crown(c, v["champ"])
    d = promote.promote(version=v["noisy"], dry_run=True)
    assert d.numbers["delta"] > 0 > d.numbers["ci_low"], d.numbers  # the case the gate exists for
    assert not d.promoted and len(fails(d)) == 1 and "no improvement shown" in fails(d)[0]


def test_each_model_is_scored_at_its_own_threshold(store):
    """The champion's very scores at a lower threshold: more sensitive, so it wins on sensitivity;
    scored at each other's thresholds it would lose."""
    c, v = store
    crown(c, v["champ"])
    d = promote.promote(names.TEST_SENSITIVITY, version=v["lower"], dry_run=True, min_specificity=0.0)
    assert d.numbers["delta"] > 0 and d.numbers["ci_low"] > 0 and d.promoted, d.reasons


def test_the_champion_gate_needs_the_same_test_set(store, monkeypatch):
    c, v = store
    crown(c, v["champ"])
    paired(monkeypatch, 0.1, 0.05, 0.15)
    assert promote.promote(version=v["plain"], dry_run=True).promoted
    for other, digest in (("elsewhere", "U"), ("undigested", None)):
        d = promote.promote(version=v[other], dry_run=True)
        assert not d.promoted and fails(d) == [
            f"different test set from champion version {v['champ']} ({digest} vs T): scores are not comparable"]
    crown(c, v["undigested"])  # neither knows its test set: not the same one either
    d = promote.promote(version=v["undigested2"], dry_run=True)
    assert not d.promoted and fails(d) == [
        f"different test set from champion version {v['undigested']} (None vs None): scores are not comparable"]


@pytest.mark.parametrize("metric, needs_threshold", [(names.TEST_AUC, False), (names.TEST_AUPRC, False),
                                                     (names.TEST_BRIER, False), (names.TEST_SENSITIVITY, True),
                                                     (names.TEST_SPECIFICITY, True), (names.TEST_F1, True)])
def test_a_threshold_metric_needs_both_thresholds(store, monkeypatch, metric, needs_threshold):
    c, v = store
    crown(c, v["unthresholded"])
    paired(monkeypatch, 0.1, 0.05, 0.15) if names.higher_is_better(metric) else paired(monkeypatch, -0.1, -0.15, -0.05)
    d = promote.promote(metric, version=v["plain"], dry_run=True)
    assert d.promoted != needs_threshold
    if needs_threshold:
        assert fails(d) == [f"no logged threshold for champion: {metric} cannot be recomputed"]
        crown(c, v["plain"])
        d = promote.promote(metric, version=v["unthresholded"], dry_run=True)
        assert fails(d) == [f"no logged threshold for candidate: {metric} cannot be recomputed"]


def test_a_decision_against_the_champion_records_what_it_was_measured_against(store, monkeypatch):
    """The numbers promote writes on the version (promotion tags) name the champion, its value of the metric
    and the test set both were scored on; the reasons say the test set matched."""
    c, v = store
    crown(c, v["champ"])
    paired(monkeypatch, 0.1, 0.05, 0.15)
    d = promote.promote(version=v["plain"], dry_run=True)
    champion_auc = job_metric(c, v["champ"], names.TEST_AUC)
    assert (d.numbers["champion_version"], d.numbers["champion_value"], d.numbers["champion_test_digest"]) == (
        v["champ"], champion_auc, "T")
    assert f"pass: same test set as champion version {v['champ']} (T)" in d.reasons
    # and the gates the candidate passes on its own, in the same record
    mv = c.get_model_version(names.MODEL_NAME, v["plain"])
    run = c.get_run(mv.run_id)
    low = run.data.metrics[names.ci_names(names.TEST_AUC)[0]]
    assert (d.numbers["run_status"], d.numbers["min_sensitivity"], d.numbers["sensitivity"]) == (
        "FINISHED", 0.9, run.data.metrics[names.TEST_SENSITIVITY])
    assert f"pass: run {mv.run_id} status FINISHED" in d.reasons
    assert f"pass: {names.ci_names(names.TEST_AUC)[0]} {low:.4g} above 0.5: better than chance" in d.reasons


def test_an_unguarded_version_is_refused_skipped_and_promoted_only_by_force(store, capsys):
    from pneumo.cli import main

    c, v = store
    why = "1 training films: the guard needs at least 2 of each"
    d = promote.promote(version=v["unguarded"], dry_run=True)
    assert not d.promoted and fails(d) == [
        f"registered without its out-of-distribution guard ({why}): it would label every decodable film, however foreign"]
    best = promote.promote(dry_run=True)  # it ranks first by test AUC, and is skipped for it
    assert best.version != v["unguarded"]
    assert any(r.startswith(f"skipped: version {v['unguarded']} ") and why in r for r in best.reasons)
    assert main(["promote", "--version", v["unguarded"]]) == 1
    assert "out-of-distribution guard" in capsys.readouterr().out
    assert names.CHAMPION not in c.get_registered_model(names.MODEL_NAME).aliases
    assert main(["promote", "--version", v["unguarded"], "--force", "--reason", "screening a labelled set"]) == 0
    assert str(c.get_registered_model(names.MODEL_NAME).aliases[names.CHAMPION]) == v["unguarded"]
    card = c.get_model_version(names.MODEL_NAME, v["unguarded"]).description
    assert "promoted (forced)" in card and "out-of-distribution guard" in card and "screening a labelled set" in card


@pytest.mark.parametrize("floor, ok", [(0.0, True), (1.0, True), (below(0.0), False), (above(1.0), False)])
def test_a_floor_must_be_a_proportion(store, floor, ok):
    for key in ("min_sensitivity", "min_specificity"):
        if ok:
            promote.promote(version=store[1]["plain"], dry_run=True, **{key: floor})
        else:
            with pytest.raises(ValueError, match=f"^{key} is a proportion: it must be between 0 and 1, got "):
                promote.promote(version=store[1]["plain"], dry_run=True, **{key: floor})


def test_a_metric_promotion_cannot_recompute_is_refused_naming_the_ones_it_can(store):
    with pytest.raises(ValueError) as refused:
        promote.promote("val_auc", version=store[1]["plain"], dry_run=True)
    assert str(refused.value) == ("promotion compares test predictions: metric must be one of "
                                  + ", ".join(names.TEST_METRICS))


def test_the_paired_bootstrap_gives_the_same_numbers_every_time(store, tmp_path, monkeypatch):
    """A decision can be checked by running it again: the champion gate's resamples are seeded. The two
    runs' predictions it downloads are removed after it: nothing is left in the temporary folder."""
    import tempfile

    c, v = store
    crown(c, v["champ"])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    first, again = (promote.promote(version=v["noisy"], dry_run=True).numbers for _ in range(2))
    assert list(scratch.iterdir()) == []
    assert (first["ci_low"], first["ci_high"], first["p_value"]) == (again["ci_low"], again["ci_high"], again["p_value"])
    # the confidence asked for is the one the CI has, and the one recorded
    narrower = promote.promote(version=v["noisy"], dry_run=True, confidence=0.8).numbers
    assert (first["confidence"], narrower["confidence"]) == (0.95, 0.8)
    assert first["ci_low"] < narrower["ci_low"] < narrower["ci_high"] < first["ci_high"]


@pytest.mark.parametrize("confidence, ok", [(0.0, False), (1.0, False), (TINY, True), (below(1.0), True)])
def test_the_confidence_is_strictly_between_0_and_1(store, confidence, ok):
    if ok:
        promote.promote(version=store[1]["plain"], dry_run=True, confidence=confidence)
    else:
        with pytest.raises(ValueError, match="confidence"):
            promote.promote(version=store[1]["plain"], dry_run=True, confidence=confidence)


@pytest.mark.parametrize("metric, numbers, reason", [
    (names.TEST_AUC, (0.1, 0.05, 0.15, 0.01), "test_auc change +0.1000 vs champion, 95% CI [+0.0500, +0.1500], p=0.0100 "
     "over 600 paired images (300 patients): improvement shown"),
    (names.TEST_AUC, (0.1, 0.05, 0.15, 0.0), "p<0.0005 over"),  # no resample against it: below one in 2,000
    (names.TEST_AUC, (0.1, 0.05, 0.15, 1 / 2000), "p=0.0005 over"),
    (names.TEST_BRIER, (-0.1, -0.15, -0.05, 0.01), "CI [-0.1500, -0.0500], p=0.0100 over 600 paired images "
     "(300 patients) (lower is better): improvement shown"),
])
def test_the_champion_gates_reason_says_the_change_its_ci_and_p(store, monkeypatch, metric, numbers, reason):
    """The reason is what the user reads and the version's promotion tag keeps."""
    c, v = store
    crown(c, v["unthresholded"])
    seen = {}

    def fake(c, cand, champ, metric, thresholds, confidence):
        seen["thresholds"] = thresholds
        delta, low, high, p = numbers
        return {"delta": delta, "ci_low": low, "ci_high": high, "p_value": p, "confidence": confidence,
                "n_images": 600, "n_patients": 300}, None

    monkeypatch.setattr(promote, "paired_test", fake)
    d = promote.promote(metric, version=v["plain"], dry_run=True)
    assert d.promoted and any(r.startswith("pass: ") and reason in r for r in d.reasons), d.reasons
    plain = job_metric(c, v["plain"], names.THRESHOLD)
    assert seen["thresholds"] == [plain, 0.5]  # a threshold-free metric: a champion without one is scored at 0.5


def test_a_paired_test_that_cannot_run_is_the_reason_promotion_fails(store, monkeypatch):
    c, v = store
    crown(c, v["champ"])
    monkeypatch.setattr(promote, "paired_test", lambda *a: ({}, "no paired images: the test sets share no film"))
    d = promote.promote(version=v["plain"], dry_run=True)
    assert not d.promoted and fails(d) == ["no paired images: the test sets share no film"]


def test_the_champion_keeps_its_place_on_a_tie_and_no_tied_version_is_reported_skipped(store):
    """plain, elsewhere and undigested share their scores (so their test AUC); with undigested the champion, the
    tie is its own: nothing to do, and only the two above it are named as skipped."""
    c, v = store
    crown(c, v["undigested"])
    d = promote.promote(version=None, dry_run=True)
    assert d.noop and d.version == v["undigested"]
    skipped = [r for r in d.reasons if r.startswith("skipped: ")]
    assert [r.split()[2] for r in skipped] == [v["unguarded"], v["undigested2"]], d.reasons


def test_for_a_lower_is_better_metric_the_lowest_passing_value_ranks_first(store):
    c, v = store
    # every version but the one that cannot pass its own gates (no guard)
    brier = {k: job_metric(c, n, names.TEST_BRIER) for k, n in v.items() if k != "unguarded"}
    d = promote.promote(names.TEST_BRIER, dry_run=True)
    assert d.version == v[min(brier, key=brier.get)] and max(brier.values()) > min(brier.values())


def test_when_no_version_can_pass_the_error_lists_each_and_says_how_to_force_one(store):
    c, v = store
    with pytest.raises(LookupError) as none_pass:
        promote.promote(dry_run=True, min_sensitivity=1.0, min_specificity=1.0)
    text = str(none_pass.value)
    assert text.startswith(f"no registered version of {names.MODEL_NAME!r} can pass the gates; skipped:\n  version ")
    assert text.endswith("\n(to promote one anyway: --version N --force --reason TEXT)")
    assert len([line for line in text.splitlines() if line.startswith("  version ")]) == len(v)
    unlogged = names.VAL_AUC_SHIFTED  # a metric these jobs did not log
    with pytest.raises(LookupError, match=f"^no registered version of {names.MODEL_NAME!r} has a value for {unlogged}$"):
        gates.best_passing(Store(c.tracking_uri), unlogged, None, 0.0, 0.0)
