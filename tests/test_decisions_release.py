"""Every promotion gate and every served label pinned at its line (issue 27): a case just inside
and one just outside, so that moving a line, flipping > into >=, or reading the wrong number
(the point difference for its CI bound, the point AUC for its lower bound) fails here.

No training. The gates read MLflow entities: `own_gates` gets real ones built in memory; the
champion gate runs over a real sqlite store whose versions hold numbers and test predictions
(no model: the gates never load one). Where only the numbers of the paired bootstrap matter,
`paired_test` is replaced by one returning chosen numbers; the real bootstrap decides the rest.
"""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Run, RunData, RunInfo, RunTag
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from pneumo.evaluation import ood, stats
from pneumo.record import names
from pneumo.release import gates, promote, registry

from helpers import empty_store

AUC_LOW, AUC_HIGH = names.ci_names(names.TEST_AUC)
GOOD = {names.TEST_AUC: 0.9, AUC_LOW: 0.8, AUC_HIGH: 0.95, names.TEST_SENSITIVITY: 0.95,
        names.TEST_SPECIFICITY: 0.6, names.THRESHOLD: 0.5}
TINY = float(np.nextafter(0.0, 1.0))  # the smallest positive number: "just above zero"


def below(x: float) -> float:
    return float(np.nextafter(x, -np.inf))


def above(x: float) -> float:
    return float(np.nextafter(x, np.inf))


# -- a version's own gates, on MLflow entities built in memory -------------------------------


def entities(metrics: dict | None = None, *, status="READY", run_status="FINISHED", tags=None, run_tags=None):
    mv = ModelVersion(names.MODEL_NAME, "7", 0, run_id="r7", status=status,
                      tags=[ModelVersionTag(k, str(v)) for k, v in (tags or {}).items()])
    run = Run(RunInfo("r7", "1", "u", run_status, 0, 1, "active"),
              RunData(metrics=[Metric(k, v, 0, 0) for k, v in (GOOD if metrics is None else metrics).items()],
                      tags=[RunTag(k, v) for k, v in (run_tags or {}).items()]))
    return mv, run


def failed(metrics=None, floors=(0.9, 0.25), **kw) -> list[str]:
    mv, run = entities(metrics, **kw)
    return gates.own_gates(mv, run, *floors)[1]


def test_a_good_version_passes_its_own_gates():
    assert failed() == []


def test_the_auc_gate_is_the_lower_ci_bound_above_one_half():
    assert failed({**GOOD, AUC_LOW: 0.5}) == [f"{AUC_LOW} 0.5 not above 0.5: the test AUC's CI includes chance"]
    assert failed({**GOOD, AUC_LOW: above(0.5)}) == []
    # the bound, not the point AUC nor the upper bound: each case reads as the other number would not
    assert failed({**GOOD, names.TEST_AUC: 0.99, AUC_HIGH: 0.999, AUC_LOW: below(0.5)})
    assert failed({**GOOD, names.TEST_AUC: 0.5, AUC_HIGH: 0.5, AUC_LOW: 0.51}) == []
    assert failed({k: v for k, v in GOOD.items() if k != AUC_LOW}) == [
        f"{AUC_LOW} not logged: nothing shows the model beats chance (AUC 0.5)"]


@pytest.mark.parametrize("metric, at", [(names.TEST_SENSITIVITY, 0), (names.TEST_SPECIFICITY, 1)])
def test_each_floor_is_met_at_its_value_and_missed_just_below(metric, at):
    floors = [0.9, 0.25]
    for floor in (0.9, 0.25, 0.5, 0.0, 1.0):
        floors[at] = floor
        assert failed({**GOOD, metric: floor}, floors) == []
        if floor > 0:
            value = below(floor)
            assert failed({**GOOD, metric: value}, floors) == [f"{metric} {value:.4g} below {floor}"]


def test_the_default_floors_are_sensitivity_0_9_and_specificity_0_25():
    import inspect

    from pneumo import cli

    defaults = (gates.MIN_SENSITIVITY, gates.MIN_SPECIFICITY)
    assert defaults == (0.9, 0.25)
    assert failed({**GOOD, names.TEST_SENSITIVITY: 0.9, names.TEST_SPECIFICITY: 0.25}, defaults) == []
    assert failed({**GOOD, names.TEST_SENSITIVITY: below(0.9)}, defaults)
    assert failed({**GOOD, names.TEST_SPECIFICITY: below(0.25)}, defaults)
    params = inspect.signature(promote.promote).parameters
    assert (params["min_sensitivity"].default, params["min_specificity"].default) == defaults
    args = cli.parser().parse_args(["promote"])
    assert (args.min_sensitivity, args.min_specificity) == defaults


def test_each_floor_reads_its_own_metric():
    """Sensitivity 0.95 / specificity 0.3 against floors 0.9 / 0.25: swapping the two fails it."""
    assert failed({**GOOD, names.TEST_SENSITIVITY: 0.95, names.TEST_SPECIFICITY: 0.3}) == []
    assert failed({**GOOD, names.TEST_SENSITIVITY: 0.3, names.TEST_SPECIFICITY: 0.95}) == [
        f"{names.TEST_SENSITIVITY} 0.3 below 0.9"]


def test_registration_must_be_ready_and_the_run_finished():
    assert failed(status="PENDING_REGISTRATION") == ["version 7 registration status PENDING_REGISTRATION (must be READY)"]
    for status in ("FAILED", "KILLED", "RUNNING"):
        assert failed(run_status=status) == [f"run r7 status {status} (must be FINISHED)"]
    mv, _ = entities()
    assert gates.own_gates(mv, None, 0.9, 0.25)[1][0] == "run r7 status unknown (run not found) (must be FINISHED)"


def test_a_version_without_its_guard_fails_naming_why():
    why = "2 training films: the guard needs at least 2 of each"
    assert failed(tags={names.TAG_NO_GUARD: why}) == [
        f"registered without its out-of-distribution guard ({why}): it would label every decodable film, "
        "however foreign"]
    assert failed(tags={names.TAG_NO_GUARD: ""})  # present, even empty: the job said it has none


def test_a_number_is_read_from_the_run_first_then_the_version():
    mv, run = entities({**GOOD, names.TEST_SENSITIVITY: 0.95}, tags={names.TEST_SENSITIVITY: 0.5})
    assert registry.logged(mv, run, names.TEST_SENSITIVITY) == 0.95
    mv, run = entities({k: v for k, v in GOOD.items() if k != names.TEST_SENSITIVITY},
                       tags={names.TEST_SENSITIVITY: 0.5})
    assert registry.logged(mv, run, names.TEST_SENSITIVITY) == 0.5
    mv, run = entities({**GOOD, names.TEST_SENSITIVITY: float("nan")}, tags={names.TEST_SENSITIVITY: 0.97})
    assert registry.logged(mv, run, names.TEST_SENSITIVITY) == 0.97  # a NaN on the run is no number
    mv, run = entities(tags={names.TAG_TEST_DIGEST: "v"}, run_tags={names.TAG_TEST_DIGEST: "r"})
    assert registry.tested_on(mv, run) == "v"
    mv, run = entities(run_tags={names.TAG_TEST_DIGEST: "r"})
    assert registry.tested_on(mv, run) == "r"


def test_a_subtype_under_the_floor_warns_and_one_at_it_does_not():
    name = names.subtype_metric(names.TEST_SENSITIVITY, "virus")
    lo, hi = names.ci_names(name)
    mv, run = entities({**GOOD, name: 0.9, lo: 0.8, hi: 0.95})
    assert gates.subtype_warnings(mv, run, 0.9) == []
    mv, run = entities({**GOOD, name: below(0.9), lo: 0.8, hi: 0.95})
    (warning,) = gates.subtype_warnings(mv, run, 0.9)
    assert warning.startswith(f"{name} ") and "[0.800, 0.950]" in warning and "below the 0.9 floor: virus" in warning


def test_skipped_versions_are_capped_at_twenty_lines():
    assert gates.capped([f"v{i}" for i in range(20)]) == [f"v{i}" for i in range(20)]
    assert gates.capped([f"v{i}" for i in range(21)])[-1] == "... and 1 more versions that cannot pass"
    assert len(gates.capped([f"v{i}" for i in range(21)])) == 21


# -- the champion gate, over a real store ------------------------------------------------------

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
    registry.log_predictions(c, run_id, hashes, patients, y, p)
    c.set_terminated(run_id, "FINISHED")
    version_tags = registry.version_tags(run_id, "data", digest or "", threshold, numbers)
    version_tags = {k: v for k, v in {**version_tags, **(tags or {})}.items() if k not in drop and v != ""}
    return str(c.create_model_version(names.MODEL_NAME, f"runs:/{run_id}/model", run_id, tags=version_tags).version)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    from mlflow import MlflowClient

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

    yield record_store.connect(), v
    mlflow.set_tracking_uri(None)


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
            with pytest.raises(ValueError, match="between 0 and 1"):
                promote.promote(version=store[1]["plain"], dry_run=True, **{key: floor})


@pytest.mark.parametrize("confidence, ok", [(0.0, False), (1.0, False), (TINY, True), (below(1.0), True)])
def test_the_confidence_is_strictly_between_0_and_1(store, confidence, ok):
    if ok:
        promote.promote(version=store[1]["plain"], dry_run=True, confidence=confidence)
    else:
        with pytest.raises(ValueError, match="confidence"):
            promote.promote(version=store[1]["plain"], dry_run=True, confidence=confidence)


# -- the served label ----------------------------------------------------------------------------


def unit_guard(threshold: float) -> ood.Guard:
    """A guard whose distances are plain Euclidean lengths: image features (2) and embedding (3) at 0."""
    z2, z3 = np.zeros(2), np.zeros(3)
    return ood.Guard(z2, np.ones(2), z2, np.eye(2), z3, np.eye(3), 1.0, 1.0, threshold, 0.99, np.zeros((4, 2)),
                     np.zeros((4, 3)), np.zeros(4), 0.5, np.array(["mean", "std"]))


def served(probabilities, threshold=0.5, band=None, guard=None, img=None, emb=None, errors=None):
    """The registered pyfunc's predict() on rows whose measurements (probability, features, embedding) are given."""
    from pneumo.release.serving import PneumoniaModel

    probabilities = np.asarray(probabilities, float)
    errors = errors or [""] * len(probabilities)
    rows = np.array([i for i, e in enumerate(errors) if not e], int)
    model = PneumoniaModel()
    model.threshold, model.band, model.guard, model.embed = threshold, band, guard, None
    model.measure = lambda blobs: {"rows": rows, "errors": errors, "prob": probabilities[rows],
                                   "feats": None if img is None else np.asarray(img, float)[rows],
                                   "emb": None if emb is None else np.asarray(emb, float)[rows]}
    return model.predict(None, pd.DataFrame({"image": [b""] * len(probabilities)}))


def test_the_label_is_pneumonia_from_the_threshold_up():
    out = served([0.3, below(0.3), above(0.3), 1.0, 0.0], threshold=0.3)
    assert list(out["label"]) == ["PNEUMONIA", "NORMAL", "PNEUMONIA", "PNEUMONIA", "NORMAL"]
    assert out["ood"].isna().all() and out["ood_flag"].isna().all()  # no guard: the columns stay empty


def test_refer_is_strictly_inside_the_band_at_both_edges():
    low, high = 0.25, 0.75
    p = [low, above(low), 0.5, below(high), high, 0.0, 1.0]
    out = served(p, threshold=0.5, band=(low, high))
    assert list(out["label"]) == ["NORMAL", "REFER", "REFER", "REFER", "PNEUMONIA", "NORMAL", "PNEUMONIA"]
    assert list(out["probability"]) == p  # the probability stays
    from pneumo.evaluation.referral import referred

    assert list(referred(p, (low, high))) == [label == "REFER" for label in out["label"]]  # one rule for test and serving
    assert list(served(p, threshold=0.5)["label"]) == ["NORMAL"] * 2 + ["PNEUMONIA"] * 3 + ["NORMAL", "PNEUMONIA"]


def test_a_flagged_film_reads_out_of_distribution_whatever_its_probability():
    g = unit_guard(threshold=2.0)
    img = [[2.0, 0], [above(2.0), 0], [0, 0], [0, 0], [0, 0]]
    emb = [[0, 0, 0], [0, 0, 0], [0, 2.0, 0], [0, above(2.0), 0], [0, 0, 0]]
    out = served([0.9, 0.5, 0.1, 0.5, 0.5], threshold=0.5, band=(0.4, 0.6), guard=g, img=img, emb=emb)
    assert list(out["ood_flag"]) == [False, True, False, True, False]
    assert list(out["label"]) == ["PNEUMONIA", "OUT_OF_DISTRIBUTION", "NORMAL", "OUT_OF_DISTRIBUTION", "REFER"]
    np.testing.assert_allclose(out["ood"], [1.0, above(2.0) / 2, 1.0, above(2.0) / 2, 0.0])


def test_an_unreadable_row_gets_no_label_and_no_probability():
    out = served([0.9, 0.9], band=(0.4, 0.6), guard=unit_guard(2.0), img=[[0, 0], [9, 9]], emb=[[0] * 3, [0] * 3],
                 errors=["", "not an image"])
    assert list(out["label"]) == ["PNEUMONIA", ""] and np.isnan(out["probability"][1])
    assert out["ood_flag"][1] is None and out["error"][1] == "not an image"
