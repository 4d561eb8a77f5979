"""registry + leaderboard against a real MLflow sqlite store holding jobs shaped as training writes them.

One store is built per session (creating an MLflow sqlite database takes
seconds) and copied per test: tests move aliases and write tags freely.
"""

import csv
import hashlib
import io
import json
import shutil
from types import SimpleNamespace

import mlflow
import mlflow.pyfunc
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from pneumo.commands import leaderboard
from pneumo.evaluation import stats
from pneumo.record import names
from pneumo.record import store as record_store
from pneumo.record.client import Store
from pneumo.record.jobs import JobRecord
from pneumo.release import promote, registry

from helpers import empty_store


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: list[float], params=None) -> list[float]:
        return model_input


# -- a store of jobs ----------------------------------------------------------------

N_PATIENTS, PER_PATIENT = 300, 2


def make_test_set(seed: int, prefix: str = "img"):
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.random(N_PATIENTS) < 0.7, PER_PATIENT).astype(int)
    patients = np.repeat([f"{prefix}-p{k}" for k in range(N_PATIENTS)], PER_PATIENT)
    hashes = [hashlib.sha256(f"{prefix}{i}".encode()).hexdigest() for i in range(len(y))]
    noise = rng.normal(0, 1, len(y))
    return y, patients, hashes, noise


def probabilities(y, noise, signal):
    return 1 / (1 + np.exp(-(signal * (2 * y - 1) + noise)))


def make_job(c, exp_id, name, data, p, *, digest="test-A", threshold=None, status="FINISHED", hp=None, drop=()):
    """A parent run as a job leaves it, plus its registered version; returns the version number.

    The predictions, the version's tags and the registration go through the functions a job uses
    (pneumo.release.registry), so a change of format reaches these tests too; only the model is a stand-in.
    `drop`: metrics the job did not log (neither on its run nor on its version), as an older pneumo left them."""
    y, patients, hashes, _ = data
    threshold = stats.choose_threshold(y, p, "sensitivity", 0.95) if threshold is None else threshold
    scores = {k: v for k, v in stats.evaluate(y, p, patients, threshold, bootstrap=200).items() if k not in drop}
    tags = {names.TAG_ROLE: "job", names.TAG_OVERRIDES: f"model=cnn job={name}", names.TAG_TEST_DIGEST: digest,
            names.TAG_DATA_DIGEST: "data-1", names.TAG_JOB_KEY: name, names.TAG_SWEEP: "s", names.TAG_JOB_NUM: "0",
            names.TAG_BEST_TRIAL: "00"}
    run_id = c.create_run(exp_id, run_name=name, tags=tags).info.run_id
    hp = hp or {"model.blocks": "3", "optimizer.learning_rate": "0.001"}
    c.log_batch(
        run_id,
        metrics=[Metric(k, v, 0, 0) for k, v in scores.items()]
        + [Metric(names.VAL_AUC, scores["test_auc"], 0, 0), Metric(names.EPOCHS_TRAINED, 7, 0, 0),
           Metric(names.TRIALS_COMPLETED, 3, 0, 0), Metric(names.TRIALS_FAILED, 0, 0, 0)],
        params=[Param("model._target_", "pneumo.model.builders.cnn")]
        + [Param(names.BEST_HP_PREFIX + k, v) for k, v in hp.items()],
    )
    order = np.random.default_rng(len(name)).permutation(len(y))  # row order is arbitrary
    record = JobRecord(Store(c.tracking_uri), exp_id, run_id)
    registry.log_predictions(record, [hashes[i] for i in order], patients[order], y[order], p[order])
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
    c.set_terminated(run_id, status)
    return registry.register(record, info.model_uri, SimpleNamespace(digest="data-1", test_digest=digest),
                             SimpleNamespace(threshold=threshold, metrics=scores, no_guard=None)).version


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("template")
    uri = empty_store(root)
    mlflow.set_tracking_uri(uri)
    try:
        c = MlflowClient(uri)
        exp = c.create_experiment("sweep-a", artifact_location=(root / "artifacts").as_uri())
        a, b = make_test_set(0), make_test_set(1, prefix="other")
        noise = a[3]
        versions = {
            "good": make_job(c, exp, "good", a, probabilities(a[0], noise, 1.0)),
            "worse": make_job(c, exp, "worse", a, probabilities(a[0], noise, 0.5)),
            "tied": make_job(c, exp, "tied", a, probabilities(a[0], noise, 1.0)),
            "better": make_job(c, exp, "better", a, probabilities(a[0], noise, 1.8)),
            "other": make_job(c, exp, "other", b, probabilities(b[0], b[3], 1.0), digest="test-B"),
            "lowsens": make_job(c, exp, "lowsens", a, probabilities(a[0], noise, 1.0), threshold=0.9),
            # good's model at a threshold that calls nearly everyone sick (specificity about 0.1)
            "lowspec": make_job(c, exp, "lowspec", a, probabilities(a[0], noise, 1.0), threshold=0.1),
            "failed": make_job(c, exp, "failed", a, probabilities(a[0], noise, 1.4), status="FAILED"),
            "mid": make_job(c, exp, "mid", a, probabilities(a[0], noise, 1.3)),  # between good and better
            # issue 9: a constant predictor (AUC 0.5, sensitivity 1.0, specificity 0.0)
            "constant": make_job(c, exp, "constant", a, np.full(len(a[0]), 0.5)),
        }
    finally:
        mlflow.set_tracking_uri(None)
    return root, versions


@pytest.fixture
def store(template, tmp_path, monkeypatch):
    """A private copy of the template store; MLFLOW_TRACKING_URI points at it."""
    root, versions = template
    shutil.copy(root / "mlflow.db", tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield MlflowClient(record_store.setup()), versions
    mlflow.set_tracking_uri(None)


def aliases(c):
    return {k: str(x) for k, x in c.get_registered_model(names.MODEL_NAME).aliases.items()}


def tags(c, version):
    return c.get_model_version(names.MODEL_NAME, version).tags


def crown(c, version):
    c.set_registered_model_alias(names.MODEL_NAME, names.CHAMPION, version)


def run_of(c, version):
    return c.get_model_version(names.MODEL_NAME, version).run_id


def board(*args, **kwargs) -> list[dict]:
    """The leaderboard's rows as `pneumo compare --format json` gives them."""
    return [r.record() for r in leaderboard.leaderboard(*args, **kwargs)]


def cli(*argv):
    """The real command line, in process: pneumo.cli.main(argv) returns the exit code."""
    from pneumo.cli import main

    return main(list(argv))


# -- promotion gates ------------------------------------------------------------------


def test_first_promotion_takes_the_best_passing_version(store):
    c, v = store
    d = promote.promote()  # no champion yet
    assert d.promoted and d.version == v["better"] and d.previous is None
    assert aliases(c) == {names.CHAMPION: v["better"]}
    t = tags(c, v["better"])
    assert t[names.TAG_PROMOTION_DECISION] == names.PROMOTED and t[names.TAG_PROMOTION_AT].endswith("+00:00")
    again = promote.promote()
    assert again.noop and not again.promoted and "already" in again.reasons[0]


def test_better_candidate_promoted_and_old_champion_kept_as_previous(store):
    c, v = store
    crown(c, v["good"])
    d = promote.promote()
    assert d.promoted and d.version == v["better"] and d.previous == v["good"]
    assert d.numbers["ci_low"] > 0 and d.numbers["delta"] > 0 and d.numbers["n_images"] == 600
    assert aliases(c) == {names.CHAMPION: v["better"], names.PREVIOUS: v["good"]}
    assert float(tags(c, v["better"])[names.promotion_tag("ci_low")]) > 0


def test_worse_candidate_refused_with_numbers(store):
    c, v = store
    crown(c, v["good"])
    d = promote.promote(version=v["worse"])
    assert not d.promoted and d.numbers["delta"] < 0 and d.numbers["ci_high"] < 0
    assert d.numbers["p_value"] > 0.5 and d.numbers["champion_version"] == v["good"]
    assert any(r.startswith("FAIL") and "no improvement shown" in r for r in d.reasons)
    assert aliases(c) == {names.CHAMPION: v["good"]}
    t = tags(c, v["worse"])
    assert t[names.TAG_PROMOTION_DECISION] == names.REFUSED and float(t[names.promotion_tag("delta")]) < 0
    assert "a tie is not a win" in t[names.TAG_PROMOTION_REASON]


def test_tie_is_not_a_win(store):
    c, v = store
    crown(c, v["good"])
    d = promote.promote(version=v["tied"])
    assert not d.promoted and d.numbers["delta"] == 0 and d.numbers["ci_low"] == 0
    assert aliases(c) == {names.CHAMPION: v["good"]}


def test_different_test_set_refused(store):
    c, v = store
    crown(c, v["good"])
    d = promote.promote(version=v["other"])
    assert not d.promoted and any("different test set" in r for r in d.reasons)
    assert d.numbers["test_digest"] == "test-B" and d.numbers["champion_test_digest"] == "test-A"
    assert "delta" not in d.numbers


def test_low_sensitivity_and_unfinished_runs_refused(store):
    c, v = store
    d = promote.promote(version=v["lowsens"])  # no champion: only FINISHED + sensitivity apply
    assert not d.promoted and any("test_sensitivity" in r and r.startswith("FAIL") for r in d.reasons)
    assert d.numbers["sensitivity"] < 0.9
    failed = promote.promote(version=v["failed"])
    assert not failed.promoted and any("FAILED" in r and r.startswith("FAIL") for r in failed.reasons)
    assert names.CHAMPION not in aliases(c)


def test_force_needs_a_reason_and_records_it(store):
    c, v = store
    crown(c, v["good"])
    for blank in (None, "", "  "):  # the message says what to give, and why
        with pytest.raises(ValueError, match="^force=True needs a non-empty reason: it is recorded on the version$"):
            promote.promote(version=v["worse"], force=True, reason=blank)
    assert cli("promote", "--version", v["worse"], "--force") == 2
    d = promote.promote(version=v["worse"], force=True, reason="champion artefact lost")
    assert d.promoted and d.forced and d.previous == v["good"]
    assert aliases(c) == {names.CHAMPION: v["worse"], names.PREVIOUS: v["good"]}
    t = tags(c, v["worse"])
    assert t[names.TAG_PROMOTION_FORCED] == "champion artefact lost" and t[names.TAG_PROMOTION_DECISION] == names.PROMOTED


def test_dry_run_changes_nothing(store, capsys):
    c, v = store
    crown(c, v["good"])
    before = tags(c, v["better"])
    d = promote.promote(dry_run=True)
    assert d.promoted and d.dry_run and d.version == v["better"]
    assert aliases(c) == {names.CHAMPION: v["good"]} and tags(c, v["better"]) == before
    assert cli("promote", "--dry-run") == 0
    assert "[dry run] would promote" in capsys.readouterr().out
    assert aliases(c) == {names.CHAMPION: v["good"]}


def test_rollback_swaps_champion_and_previous(store):
    c, v = store
    with pytest.raises(LookupError, match="previous"):
        promote.rollback()
    assert cli("promote", "--rollback") == 1
    crown(c, v["good"])
    promote.promote()
    d = promote.rollback()
    assert d.promoted and d.rollback and d.version == v["good"] and d.previous == v["better"]
    assert aliases(c) == {names.CHAMPION: v["good"], names.PREVIOUS: v["better"]}
    promote.rollback()  # a second rollback undoes the first
    assert aliases(c) == {names.CHAMPION: v["better"], names.PREVIOUS: v["good"]}


def test_constant_predictor_refused_by_every_path(store, capsys):
    """Issue 9: one registered job whose model is a constant predictor passed every gate."""
    c, v = store
    const = v["constant"]
    for version in set(v.values()) - {const}:  # the registry: that job's version alone
        c.delete_model_version(names.MODEL_NAME, version)
    before = tags(c, const)
    assert cli("promote", "--version", const, "--dry-run") == 1
    out = capsys.readouterr().out
    assert out.startswith(f"[dry run] REFUSED version {const}")
    assert "FAIL: test_auc_ci_low 0.5 not above 0.5" in out and "FAIL: test_specificity 0 below 0.25" in out
    assert "pass: test_sensitivity 1 >= 0.9" in out  # the one floor it always cleared
    assert tags(c, const) == before
    for argv in (["--dry-run"], [], ["--force", "--reason", "the only model we have"]):
        assert cli("promote", *argv) == 1  # the best that can pass: none; force needs a named version
        err = capsys.readouterr().err
        assert f"can pass the gates; skipped:\n  version {const} (test_auc 0.5): " in err
        assert "test_auc_ci_low 0.5 not above 0.5" in err and "--version N --force --reason" in err
        assert names.CHAMPION not in aliases(c)
    assert cli("promote", "--version", const) == 1
    assert "REFUSED" in capsys.readouterr().out
    t = tags(c, const)
    assert t[names.TAG_PROMOTION_DECISION] == names.REFUSED and t[names.promotion_tag("test_auc_ci_low")] == "0.5"
    assert t[names.promotion_tag("specificity")] == "0" and t[names.promotion_tag("min_specificity")] == "0.25"
    assert names.CHAMPION not in aliases(c)
    assert cli("promote", "--version", const, "--force", "--reason", "serving smoke test") == 0
    assert aliases(c) == {names.CHAMPION: const}
    t = tags(c, const)
    assert t[names.TAG_PROMOTION_DECISION] == names.PROMOTED and t[names.TAG_PROMOTION_FORCED] == "serving smoke test"


def test_each_usefulness_gate_refuses_on_its_own(store):
    c, v = store
    chance = promote.promote(version=v["constant"], min_specificity=0.0, dry_run=True)  # only the CI is left
    assert not chance.promoted
    assert [r for r in chance.reasons if r.startswith("FAIL")] == [
        "FAIL: test_auc_ci_low 0.5 not above 0.5: the test AUC's CI includes chance"]
    # a good ranker at a threshold that calls nearly every healthy child sick
    sick = promote.promote(version=v["lowspec"], dry_run=True)
    assert not sick.promoted and sick.numbers["test_auc_ci_low"] > 0.9 and sick.numbers["specificity"] < 0.25
    assert sick.numbers["sensitivity"] > 0.99 and sick.numbers["min_specificity"] == 0.25  # the default
    assert [r for r in sick.reasons if r.startswith("FAIL")] == [
        f"FAIL: test_specificity {sick.numbers['specificity']:.4g} below 0.25"]
    assert promote.promote(version=v["lowspec"], min_specificity=0.0, dry_run=True).promoted
    weak = promote.promote(version=v["worse"], min_specificity=0.5, dry_run=True)  # a stricter site's floor
    assert not weak.promoted and [r for r in weak.reasons if r.startswith("FAIL")] == [
        f"FAIL: test_specificity {weak.numbers['specificity']:.4g} below 0.5"]
    assert names.CHAMPION not in aliases(c)


def test_promote_ranks_only_versions_that_can_pass(store):
    c, v = store
    # by sensitivity the two that call (nearly) everything pneumonia rank first, with 1.0
    d = promote.promote(metric="test_sensitivity", dry_run=True)
    assert d.promoted and d.version not in (v["constant"], v["lowspec"]) and d.numbers["sensitivity"] < 1
    assert [r for r in d.reasons if r.startswith("skipped:")] == [
        f"skipped: version {v['lowspec']} (test_sensitivity 1): test_specificity 0.08482 below 0.25",
        f"skipped: version {v['constant']} (test_sensitivity 1): test_auc_ci_low 0.5 not above 0.5: the test "
        "AUC's CI includes chance; test_specificity 0 below 0.25",
    ]
    crown(c, v["other"])  # a champion tested on other images: scores on test-A do not rank against it
    d = promote.promote(dry_run=True)
    assert d.noop and d.version == v["other"] and aliases(c) == {names.CHAMPION: v["other"]}
    skipped = [r for r in d.reasons if r.startswith("skipped:")]
    assert skipped[0].startswith(f"skipped: version {v['better']} (test_auc ")
    assert skipped[0].endswith(f"tested on test-A, champion version {v['other']} on test-B: not comparable")


def test_promote_skips_failed_and_killed_jobs(store, capsys):
    """Issue 13.2: the best score came from a job that did not finish."""
    c, v = store
    c.set_terminated(run_of(c, v["better"]), "KILLED")  # killed after it registered its model
    # by test_auc: better (KILLED) > failed (FAILED) > mid, the best that can pass
    assert cli("promote", "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"[dry run] would promote version {v['mid']} to 'champion'")
    assert "the best passing version takes it" in out
    d = promote.promote()
    assert d.promoted and d.version == v["mid"] and aliases(c) == {names.CHAMPION: v["mid"]}
    skipped = [r for r in d.reasons if r.startswith("skipped:")]
    assert len(skipped) == 2
    assert skipped[0].startswith(f"skipped: version {v['better']} (test_auc ") and "status KILLED" in skipped[0]
    assert skipped[1].startswith(f"skipped: version {v['failed']} (test_auc ") and "status FAILED" in skipped[1]
    assert "must be FINISHED" in skipped[0] and "must be FINISHED" in skipped[1]
    assert f"skipped: version {v['failed']}" in tags(c, v["mid"])[names.TAG_PROMOTION_REASON]
    assert cli("promote") == 0  # the champion is the best that can pass: nothing to do, and says why
    out = capsys.readouterr().out
    assert out.startswith(f"nothing to do: version {v['mid']} already holds 'champion'")
    assert f"skipped: version {v['better']}" in out and f"skipped: version {v['failed']}" in out
    assert aliases(c) == {names.CHAMPION: v["mid"]}


def test_rollback_after_two_real_promotions(store, capsys):
    c, v = store
    a, b, new = v["good"], v["mid"], v["better"]
    assert cli("promote", "--rollback", "--dry-run") == 1  # nothing to roll back to yet
    assert "previous" in capsys.readouterr().err
    assert cli("promote", "--version", a) == 0  # the first champion
    assert cli("promote", "--version", b) == 0  # A -> B: beats A in the paired bootstrap
    assert cli("promote") == 0  # B -> C: the best
    assert aliases(c) == {names.CHAMPION: new, names.PREVIOUS: b}
    assert tags(c, new)[names.promotion_tag("champion_version")] == b and tags(c, b)[names.promotion_tag("champion_version")] == a
    capsys.readouterr()
    promoted = {x: tags(c, x) for x in (a, b, new)}
    cards = {x: c.get_model_version(names.MODEL_NAME, x).description for x in (a, b, new)}
    assert all("promoted for `champion`" in text for text in cards.values())  # each decision on its card

    assert cli("promote", "--rollback", "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"[dry run] would roll back 'champion' to version {b}; version {new} becomes 'previous'")
    assert aliases(c) == {names.CHAMPION: new, names.PREVIOUS: b}
    assert {x: tags(c, x) for x in (a, b, new)} == promoted
    assert {x: c.get_model_version(names.MODEL_NAME, x).description for x in (a, b, new)} == cards

    assert cli("promote", "--rollback") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ROLLED BACK 'champion' to version {b}; version {new} becomes 'previous'")
    assert aliases(c) == {names.CHAMPION: b, names.PREVIOUS: new}
    after = {x: tags(c, x) for x in (a, b, new)}
    assert after[a] == promoted[a]  # one level of history: A is neither alias nor touched
    for x in (b, new):  # the promotion.* record of each decision stays; rollback.* says what happened
        assert {k: t for k, t in after[x].items() if not k.startswith("rollback.")} == promoted[x]
    assert set(after[b]) - set(promoted[b]) == {"rollback.restored_at"}
    assert set(after[new]) - set(promoted[new]) == {"rollback.displaced_at"}
    card_b, card_new = (c.get_model_version(names.MODEL_NAME, x).description for x in (b, new))
    assert card_b.startswith(cards[b].rstrip())
    assert card_b.rstrip().endswith(f"this version takes `champion` back from version {new}")
    assert card_new.startswith(cards[new].rstrip())
    assert card_new.rstrip().endswith(f"gives `champion` back to version {b} (rollback)")
    assert card_b.count("## History") == 1 and card_b.count("### ") == 2  # its promotion, then this rollback

    assert cli("promote", "--rollback") == 0  # the second rollback undoes the first
    assert capsys.readouterr().out.startswith(f"ROLLED BACK 'champion' to version {new}; version {b} becomes")
    assert aliases(c) == {names.CHAMPION: new, names.PREVIOUS: b}
    assert {"rollback.restored_at", "rollback.displaced_at"} <= set(tags(c, new))
    assert tags(c, new)[names.TAG_PROMOTION_DECISION] == names.PROMOTED
    assert cli("promote", "--rollback", "--version", a) == 2
    assert cli("promote", "--rollback", "--force", "--reason", "x") == 2
    assert aliases(c) == {names.CHAMPION: new, names.PREVIOUS: b}


def test_promote_cli_exit_codes(store, capsys):
    c, v = store
    crown(c, v["good"])
    assert cli("promote", "--version", v["worse"]) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and "delta" in out
    assert cli("promote") == 0
    assert "PROMOTED" in capsys.readouterr().out and aliases(c)[names.CHAMPION] == v["better"]
    with pytest.raises(SystemExit) as exit_:
        cli("promote", "--metric", "val_loss")
    assert exit_.value.code == 2
    for bad in (["--min-specificity", "1.5"], ["--min-sensitivity", "-0.1"], ["--min-specificity", "nan"]):
        assert cli("promote", "--dry-run", *bad) == 2
        assert "must be between 0 and 1" in capsys.readouterr().err


# -- each gate where it bites (issue 18.3) ---------------------------------------------

AUC_CI_LOW = names.ci_names(names.TEST_AUC)[0]


def fails(d) -> list[str]:
    return [r for r in d.reasons if r.startswith("FAIL")]


def test_auc_gate_reads_the_lower_ci_bound_not_the_point_auc(store, capsys):
    """A model a hair better than chance on 600 images: its test AUC is above 0.5, its CI reaches below."""
    c, v = store
    a = make_test_set(0)  # test-A, the images every other version was tested on
    weak = make_job(c, c.get_experiment_by_name("sweep-a").experiment_id, "weak", a, probabilities(a[0], a[3], 0.1))
    m = c.get_run(run_of(c, weak)).data.metrics
    assert m[names.TEST_AUC] > 0.5 >= m[AUC_CI_LOW]  # what a gate reading the point AUC would pass
    floors = {"min_sensitivity": 0.0, "min_specificity": 0.0}  # only the AUC gate left to refuse it
    d = promote.promote(version=weak, dry_run=True, **floors)
    assert not d.promoted and d.numbers[AUC_CI_LOW] == m[AUC_CI_LOW]
    assert fails(d) == [f"FAIL: {AUC_CI_LOW} {m[AUC_CI_LOW]:.4g} not above 0.5: the test AUC's CI includes chance"]
    assert cli("promote", "--version", weak, "--min-sensitivity", "0", "--min-specificity", "0") == 1
    assert f"REFUSED version {weak}" in capsys.readouterr().out
    assert tags(c, weak)[names.TAG_PROMOTION_DECISION] == names.REFUSED and names.CHAMPION not in aliases(c)
    for version in set(v.values()):  # alone in the registry, it is not the best that can pass either
        c.delete_model_version(names.MODEL_NAME, version)
    with pytest.raises(LookupError, match=f"version {weak} .*{AUC_CI_LOW} .* not above 0.5"):
        promote.promote(dry_run=True, **floors)


@pytest.mark.parametrize("status", ["PENDING_REGISTRATION", "FAILED_REGISTRATION"])
def test_a_version_not_ready_is_refused_and_skipped(store, tmp_path, status):
    """MLflow's other registration states: the model's files may not (all) be there to serve."""
    import sqlite3

    c, v = store
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # the store's own record, as a slow registration leaves it
        db.execute("UPDATE model_versions SET status = ? WHERE name = ? AND version = ?",
                   (status, names.MODEL_NAME, int(v["better"])))
    assert c.get_model_version(names.MODEL_NAME, v["better"]).status == status
    d = promote.promote(version=v["better"], dry_run=True)
    assert not d.promoted
    assert fails(d) == [f"FAIL: version {v['better']} registration status {status} (must be READY)"]
    best = promote.promote(dry_run=True)  # the best by test_auc is skipped, naming why
    assert best.promoted and best.version == v["mid"]
    assert [r for r in best.reasons if r.startswith("skipped:")] == [
        f"skipped: version {v['better']} (test_auc {best_auc(c, v['better'])}): "
        f"version {v['better']} registration status {status} (must be READY)",
        f"skipped: version {v['failed']} (test_auc {best_auc(c, v['failed'])}): "
        f"run {run_of(c, v['failed'])} status FAILED (must be FINISHED)"]


def best_auc(c, version) -> str:
    from pneumo.evaluation import format

    return format.value(c.get_run(run_of(c, version)).data.metrics[names.TEST_AUC])


@pytest.mark.parametrize("metric, floor", [
    (AUC_CI_LOW, "nothing shows the model beats chance (AUC 0.5)"),
    (names.TEST_SENSITIVITY, "the 0.9 floor cannot be checked"),
    (names.TEST_SPECIFICITY, "the 0.25 floor cannot be checked"),
])
def test_a_gate_metric_not_logged_is_refused_naming_it(store, capsys, metric, floor):
    """Neither the run nor the version has it: the gate fails saying what is missing, it does not pass."""
    c, v = store
    a = make_test_set(0)  # the best model of the registry, but for the one number it never logged
    version = make_job(c, c.get_experiment_by_name("sweep-a").experiment_id, "unlogged", a,
                       probabilities(a[0], a[3], 2.2), drop=(metric,))
    assert metric not in c.get_run(run_of(c, version)).data.metrics and metric not in tags(c, version)
    d = promote.promote(version=version, dry_run=True)
    assert not d.promoted and fails(d) == [f"FAIL: {metric} not logged: {floor}"]
    assert cli("promote", "--version", version, "--dry-run") == 1
    assert f"FAIL: {metric} not logged: {floor}" in capsys.readouterr().out
    best = promote.promote(dry_run=True)  # ranked first by test_auc, and skipped for it
    assert best.promoted and best.version == v["better"]
    skipped = [r for r in best.reasons if r.startswith("skipped:")]
    assert skipped[0].startswith(f"skipped: version {version} (test_auc ")
    assert skipped[0].endswith(f"{metric} not logged: {floor}")


@pytest.mark.parametrize("metric, option, key", [
    (names.TEST_SPECIFICITY, "--min-specificity", "min_specificity"),
    (names.TEST_SENSITIVITY, "--min-sensitivity", "min_sensitivity"),
])
def test_a_floor_is_met_at_exactly_its_value_and_missed_just_below(store, capsys, metric, option, key):
    c, v = store
    value = c.get_run(run_of(c, v["good"])).data.metrics[metric]  # the number the gate reads
    above = float(np.nextafter(value, 1.0))  # the smallest floor the value is below
    assert promote.promote(version=v["good"], dry_run=True, **{key: value}).promoted
    assert cli("promote", "--version", v["good"], "--dry-run", option, repr(value)) == 0
    assert f"pass: {metric} {value:.4g} >= {value}" in capsys.readouterr().out
    d = promote.promote(version=v["good"], dry_run=True, **{key: above})
    assert not d.promoted and fails(d) == [f"FAIL: {metric} {value:.4g} below {above}"]
    assert cli("promote", "--version", v["good"], "--dry-run", option, repr(above)) == 1
    assert f"FAIL: {metric} {value:.4g} below {above}" in capsys.readouterr().out


# -- leaderboard ------------------------------------------------------------------------


def test_leaderboard_rows_join_versions_and_aliases(store):
    c, v = store
    crown(c, v["good"])
    rows = board("sweep-a")
    assert [r["run_name"] for r in rows][0] == "better" and len(rows) == 10
    good = next(r for r in rows if r["run_name"] == "good")
    assert good["version"] == int(v["good"]) and good["aliases"] == [names.CHAMPION]
    assert good["best_hp"] == {"model.blocks": "3", "optimizer.learning_rate": "0.001"}
    assert good["test_auc_ci_low"] <= good["test_auc"] <= good["test_auc_ci_high"]
    assert good["epochs_trained"] == 7 and good["duration_s"] >= 0 and good["overrides"] == "model=cnn job=good"
    with pytest.raises(LookupError):
        board("no-such-sweep")


def test_compare_ranks_finished_jobs_and_lists_the_others_after(store, capsys):
    """Issue 13.2: a FAILED or KILLED job that scored highest is not first; it is listed, marked."""
    c, v = store
    c.set_terminated(run_of(c, v["better"]), "KILLED")
    rows = board("sweep-a")
    assert rows[0]["run_name"] == "mid"  # the best FINISHED job, below the KILLED and the FAILED one
    assert [r["rank"] for r in rows[:8]] == list(range(1, 9)) and all(r["status"] == "FINISHED" for r in rows[:8])
    assert [(r["run_name"], r["status"], r["rank"]) for r in rows[8:]] == [("better", "KILLED", None),
                                                                           ("failed", "FAILED", None)]
    top = board("sweep-a", top=2)  # the 2 best finished, and the unfinished that scored among them
    assert [(r["run_name"], r["rank"]) for r in top] == [("mid", 1), (top[1]["run_name"], 2), ("better", None),
                                                         ("failed", None)]
    assert cli("compare", "--experiment", "sweep-a", "--format", "table") == 0
    table = capsys.readouterr().out
    assert "KILLED" in table and "FAILED" in table and "2 job(s) not FINISHED" in table
    assert table.index("mid") < table.index("KILLED") < table.index("FAILED")
    assert cli("compare", "--experiment", "sweep-a", "--format", "csv") == 0
    records = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(records[0])[0] == "rank" and [r["rank"] for r in records[-2:]] == ["", ""]


def test_compare_lists_a_running_job_after_the_ranked_ones_unranked(store, capsys):
    """A job still running has logged its numbers (the best so far): listed, marked RUNNING, not ranked."""
    c, v = store
    c.update_run(run_of(c, v["better"]), status="RUNNING")  # the top scorer, reopened as a job still in progress
    rows = board("sweep-a")
    assert [(r["run_name"], r["status"], r["rank"]) for r in rows[8:]] == [("better", "RUNNING", None),
                                                                           ("failed", "FAILED", None)]
    assert rows[0]["run_name"] == "mid" and [r["rank"] for r in rows[:8]] == list(range(1, 9))
    top = board("sweep-a", top=1)
    assert [(r["run_name"], r["rank"]) for r in top] == [("mid", 1), ("better", None), ("failed", None)]
    assert cli("compare", "--experiment", "sweep-a", "--format", "json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["run_name"], r["rank"]) for r in listed[-2:]] == [("better", None), ("failed", None)]
    assert cli("compare", "--experiment", "sweep-a", "--format", "table") == 0
    table = capsys.readouterr().out
    assert "RUNNING" in table and "2 job(s) not FINISHED" in table
    assert table.index("mid") < table.index("RUNNING") < table.index("FAILED")
    assert promote.promote(dry_run=True).version == v["mid"]  # and promotion skips it too


class Counting:
    """Forwards to a client and counts the calls by method name."""

    def __init__(self, inner):
        self.inner, self.calls = inner, {}

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args, **kwargs)

        return call


@pytest.fixture(scope="module")
def big_store(template, tmp_path_factory):
    """The template plus 300 finished jobs in a second sweep, three calls per run (read-only tests)."""
    root = tmp_path_factory.mktemp("big")
    shutil.copy(template[0] / "mlflow.db", root / "mlflow.db")
    c = MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = c.create_experiment("sweep-big")
    rng = np.random.default_rng(0)
    for i in range(300):
        run = c.create_run(exp, run_name=f"job-{i}", tags={names.TAG_ROLE: "job", names.TAG_OVERRIDES: f"model.blocks={i}"})
        values = {"test_auc": rng.random(), "test_brier": rng.random() / 4, "test_sensitivity": rng.random()}
        c.log_batch(run.info.run_id, metrics=[Metric(k, x, 0, 0) for k, x in values.items()],
                    params=[Param("best_hp.model.blocks", str(i))], tags=[RunTag("x", "y")])
        c.set_terminated(run.info.run_id)  # only FINISHED jobs are ranked
    for i in range(3):  # trials must not appear
        c.create_run(exp, run_name=f"trial-{i}", tags={names.TAG_ROLE: "trial", "mlflow.parentRunId": "x"})
    return f"sqlite:///{root}/mlflow.db"


@pytest.fixture
def big(big_store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", big_store)
    yield record_store.connect()
    mlflow.set_tracking_uri(None)


def test_leaderboard_scales_with_pages_not_runs(big):
    c = big
    counting = Store(c.uri)
    counting._client = Counting(counting._client)
    rows = board("sweep-big", store=counting, page_size=100)
    assert len(rows) == 300 and all(r["run_name"].startswith("job-") for r in rows)
    auc = [r["test_auc"] for r in rows]
    assert auc == sorted(auc, reverse=True)
    calls = counting._client.calls
    assert calls["search_runs"] == 3 + 1  # pages of 100 jobs and one of evaluations, not a call per run
    assert calls.get("search_model_versions") == 1
    assert not {"get_run", "get_metric_history"} & set(calls)

    brier = board("sweep-big", metric="test_brier", top=5, store=c)
    values = [r["test_brier"] for r in brier]
    assert len(values) == 5 and values == sorted(values)
    assert values[0] == min(r["test_brier"] for r in rows)

    everything = board(None, store=c)  # every experiment: 300 + the 10 template jobs
    assert len(everything) == 310 and {r["experiment"] for r in everything} == {"sweep-a", "sweep-big"}


def test_compare_cli_formats(big, capsys):
    assert cli("compare", "--experiment", "sweep-big", "--top", "4", "--format", "json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and rows[0]["test_auc"] >= rows[-1]["test_auc"]
    assert cli("compare", "--metric", "test_brier", "--format", "csv") == 0
    records = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    briers = [float(r["test_brier"]) for r in records if r["test_brier"] and r["rank"]]
    assert len(records) == 310 and briers == sorted(briers)
    assert [r["run_name"] for r in records if not r["rank"]] == ["failed"]  # the one FAILED job comes last
    assert records[-1]["run_name"] == "failed" and records[-1]["status"] == "FAILED"
    assert "best_hp.model.blocks" in records[0]
    assert cli("compare", "--experiment", "sweep-a") == 0  # not a tty: json by default
    assert json.loads(capsys.readouterr().out)[0]["run_name"] == "better"
    assert cli("compare", "--experiment", "sweep-a", "--format", "table") == 0
    table = capsys.readouterr().out
    assert "better" in table and "[" in table and "test_auc" in table
    assert cli("compare", "--experiment", "nope") == 1


def test_a_resumed_job_finds_the_version_its_run_registered_and_no_other(store):
    c, versions = store
    for name in ("good", "worse"):
        found = Store(c.tracking_uri).registered(run_of(c, versions[name]))
        assert found is not None and str(found.version) == str(versions[name])
    fresh = c.create_run(c.get_experiment_by_name("sweep-a").experiment_id).info.run_id
    assert Store(c.tracking_uri).registered(fresh) is None
