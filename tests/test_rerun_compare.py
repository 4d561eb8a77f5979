"""`pneumo compare` on reruns and seed repeats, against a real sqlite store of job-shaped runs (no training).

The slow end-to-end checks (a real rerun, real repeats) are in test_reruns.py; here the
verdict's tolerance, the one extra query for originals off the page, and what the table,
JSON and CSV show.
"""

from __future__ import annotations

import csv
import io
import json

import mlflow
import pytest
from mlflow.entities import Metric, RunTag

from pneumo.cli import main as cli
from pneumo.commands import leaderboard, reproduce, table
from pneumo.record import names
from pneumo.record.client import Store

from helpers import empty_store

BASE = {names.VAL_AUC: 0.758, names.THRESHOLD: 0.565, names.TEST_AUC: 0.786, names.TEST_SENSITIVITY: 0.714,
        names.TEST_SPECIFICITY: 0.5, names.TEST_BRIER: 0.232}


def job(client, exp_id, name, values, tags=None):
    run = client.create_run(exp_id, run_name=name, tags={names.TAG_ROLE: "job", **(tags or {})})
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, 0, 0) for k, v in values.items()],
                     tags=[RunTag(k, v) for k, v in (tags or {}).items()])
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare-store")
    uri = empty_store(root)
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("s", artifact_location=(root / "artifacts").as_uri())
    ids = {"original": job(client, exp, "original", BASE)}
    ids["same"] = job(client, exp, "same", {**BASE, names.TEST_AUC: BASE[names.TEST_AUC] + 1e-6},
                      {names.TAG_RERUN_OF: ids["original"]})
    ids["moved"] = job(client, exp, "moved", {**BASE, names.TEST_AUC: 0.9, names.TEST_BRIER: 0.2},
                       {names.TAG_RERUN_OF: ids["original"]})
    seeds = {m: v for name in (names.TEST_AUC, names.MODEL_VAL_AUC) for m, v in zip(names.seed_names(name), (0.801, 0.0234))}
    ids["seeded"] = job(client, exp, "seeded", {**BASE, names.TEST_AUC: 0.5, names.SEED_REPEATS: 3, **seeds})
    return uri, client, ids


def board(client, *args, **kw) -> list[dict]:
    """The leaderboard's rows as `pneumo compare --format json` gives them, of the store `client` is on."""
    return [r.record() for r in leaderboard.leaderboard(*args, store=Store(client.tracking_uri), **kw)]


def rows_by_name(client, **kw):
    return {r["run_name"]: r for r in board(client, "s", **kw)}


def test_a_rerun_is_flagged_only_beyond_the_tolerance(store):
    _, client, ids = store
    rows = rows_by_name(client)
    assert rows["same"]["rerun"]["differs"] is False and rows["same"]["rerun"]["max_diff"] == pytest.approx(1e-6)
    moved = rows["moved"]["rerun"]
    assert moved["differs"] is True and moved["of"] == ids["original"]
    assert moved["diffs"] == {names.TEST_AUC: [0.786, 0.9], names.TEST_BRIER: [0.232, 0.2]}
    assert "rerun" not in rows["original"] and "rerun" not in rows["seeded"]
    assert rows_by_name(client, tolerance=0.2)["moved"]["rerun"]["differs"] is False


def test_the_original_is_found_when_it_is_off_the_page(store):
    _, client, ids = store
    top = board(client, "s", top=1)  # "moved" ranks first; its original is not kept
    assert [r["run_name"] for r in top] == ["moved"]
    assert top[0]["rerun"]["differs"] is True and top[0]["rerun"]["of"] == ids["original"]


def test_a_metric_that_only_one_run_has_differs():
    verdict = reproduce.differences({names.TEST_AUC: 0.7, names.TEST_NPV: float("nan")},
                                    {names.TEST_AUC: 0.7, names.TEST_NPV: 0.5})
    assert verdict.differs and list(verdict.diffs) == [names.TEST_NPV]
    assert not reproduce.differences({names.TEST_NPV: float("nan")}, {}).differs  # undefined in both: the same


def test_compare_shows_the_verdict_and_the_seed_spread(store, capsys, monkeypatch):
    uri, _, ids = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert cli(["compare", "--experiment", "s", "--format", "table"]) == 0
    table = capsys.readouterr().out  # a piped table folds long cells: short words only
    assert table.count("DIFFERS") == 1 and table.count(ids["original"][:8]) == 2
    assert "0.801 ±" in table and "0.023" in table and "3 seeds" in table
    assert cli(["compare", "--experiment", "s", "--format", "csv"]) == 0
    records = {r["run_name"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert records["moved"]["rerun_differs"] == "True" and records["same"]["rerun_differs"] == "False"
    assert float(records["seeded"]["test_auc_seed_sd"]) == pytest.approx(0.0234)
    assert cli(["compare", "--experiment", "s", "--format", "json", "--tolerance", "0.5"]) == 0
    rows = {r["run_name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["moved"]["rerun"]["differs"] is False and rows["seeded"]["seeds"][names.TEST_AUC]["mean"] == 0.801


def test_without_reruns_or_repeats_the_table_keeps_its_columns(store):
    rows = leaderboard.leaderboard("s", store=Store(store[1].tracking_uri))
    columns = table.table_columns(names.TEST_AUC, [r for r in rows if not r.seeds and not r.rerun])
    assert columns == table.table_columns(names.TEST_AUC)
    assert table.SEEDS_COLUMN not in columns and table.RERUN_COLUMN not in columns


def test_the_seed_spread_is_the_mean_and_sample_sd():
    from pneumo.search.repeats import spread

    stats = spread([{names.TEST_AUC: 0.7, names.TEST_NPV: 0.5}, {names.TEST_AUC: 0.8}, {names.TEST_AUC: 0.9}])
    mean, sd = names.seed_names(names.TEST_AUC)
    assert stats[names.SEED_REPEATS] == 3 and stats[mean] == pytest.approx(0.8) and stats[sd] == pytest.approx(0.1)
    mean, sd = names.seed_names(names.TEST_NPV)
    assert stats[mean] == 0.5 and sd not in stats  # one value: no SD


def test_every_rankable_metric_ranks_including_an_objective_of_the_jobs_own(store, tmp_path):
    """`pneumo compare --metric M` and the end-of-sweep table (ranked by the tuner's objective) accept
    every metric pneumo knows a direction for (model_val_auc and val_auc_shifted were missing from the rows);
    a job without it comes after those with it."""
    _, client, ids = store
    for metric in names.HIGHER_IS_BETTER:
        rows = board(client, "s", metric)
        assert all(metric in r for r in rows) and {r["run_id"] for r in rows} == set(ids.values()), metric
    client = mlflow.MlflowClient(empty_store(tmp_path))
    exp = client.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    plain = job(client, exp, "plain", BASE)
    shifted = job(client, exp, "shifted", {**BASE, names.VAL_AUC_SHIFTED: 0.97})
    rows = board(client, "t", names.VAL_AUC_SHIFTED)
    assert [(r["run_id"], r[names.VAL_AUC_SHIFTED]) for r in rows] == [(shifted, 0.97), (plain, None)]
