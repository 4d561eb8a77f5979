"""`pneumo compare` knows seed noise: the seeds of one configuration are one row (mean, SD, CI), every
configuration that cannot be told apart from the best is marked, `--importance` says which keys
matter; and the end-of-sweep table reads whole in a log file.

Real sqlite stores of job-shaped runs (no training) whose metric depends on known keys plus seed
noise, so the answer is known; one toy sweep end to end (slow).
"""

from __future__ import annotations

import csv
import io
import json
import math

import mlflow
import numpy as np
import pytest
from mlflow.entities import Metric, Param, RunTag

from pneumo.cli import main as cli
from pneumo.commands import groups, leaderboard, summary, table
from pneumo.commands import importance as explained
from pneumo.evaluation import importance, seeds
from pneumo.record import names
from pneumo.record import params as record
from pneumo.record.client import Store

from helpers import TOY, empty_store, run_pneumo, tracking_uri

T_975_4 = 2.776445  # Student's t, 97.5th percentile, 4 degrees of freedom (a printed table's value)
HALF = T_975_4 * math.sqrt(2 * 0.01**2 / 3)  # Welch's half-width for two configurations of 3 seeds with SD 0.01


class Sweep:
    """Job runs as `pneumo train` records them: flat config params, job and config keys, digests."""

    def __init__(self, client, name: str):
        self.client, self.exp, self.clock = client, client.create_experiment(name), 1_000_000

    def job(self, value: float | None, seed: int, status: str = "FINISHED", tag: bool = True, rerun_of: str = "",
            metric: str = names.VAL_AUC, **config) -> str:
        config = {"model.blocks": "3", "optimizer.rho": "0.9", "trainer.epochs": "3", **config}
        params = {**config, "seed": str(seed), "tuner.seed": str(seed), "paths.cache": f"/tmp/{self.clock}",
                  "best_hp.model.dropout": "0.25"}  # paths.* differs from job to job and is not part of one
        tags = {names.TAG_ROLE: names.ROLE_JOB, names.TAG_DATA_DIGEST: "d", names.TAG_TEST_DIGEST: "t",
                names.TAG_JOB_KEY: json.dumps([config, seed])}
        if tag:  # jobs recorded before the tag existed are grouped from their params
            tags[names.TAG_CONFIG_KEY] = record.config_key(params, "d", "t")
        if rerun_of:
            tags[names.TAG_RERUN_OF] = rerun_of
        self.clock += 1000
        name = " ".join(f"{k}={v}" for k, v in config.items() if k != "trainer.epochs") + f" seed={seed}"
        run = self.client.create_run(self.exp, start_time=self.clock, run_name=name)
        metrics = {} if value is None else {metric: value, names.TEST_AUC: value - 0.05}
        self.client.log_batch(run.info.run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
                              params=[Param(k, v) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run.info.run_id, status)
        return run.info.run_id

    def config(self, values, **config) -> list[str]:
        return [self.job(v, seed, **config) for seed, v in enumerate(values)]


def three(mean: float) -> list[float]:
    return [mean - 0.01, mean, mean + 0.01]  # SD 0.01 exactly


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = empty_store(tmp_path_factory.mktemp("noise"))
    client = mlflow.MlflowClient(uri)
    screen = Sweep(client, "screen")
    a = [screen.job(0.89, 0, tag=False), *(screen.job(v, s) for s, v in ((1, 0.90), (2, 0.91)))]  # A: 0.90
    screen.job(0.50, 0, rerun_of=a[0])  # a rerun repeats a counted seed: left out
    screen.config(three(0.90 - 0.9 * HALF), **{"optimizer.rho": "0.8"})  # B: within the noise of A
    screen.job(0.99, 0, **{"model.blocks": "2"})  # C's seed 0, then run again (restart=true): only the later counts
    screen.config(three(0.80), **{"model.blocks": "2"})  # C: clearly worse
    screen.job(0.70, 3, status="FAILED", **{"model.blocks": "2"})
    screen.job(0.85, 0, **{"model.blocks": "5"})  # D: one seed
    for side, f in (("inside", 0.99), ("outside", 1.01)):  # the tie line, from both sides
        line = Sweep(client, side)
        line.config(three(0.90))
        line.config(three(0.90 - f * HALF), **{"optimizer.rho": "0.8"})
    grid = Sweep(client, "grid")  # one seed each: a row per job
    grid.job(0.9, 0)
    grid.job(0.8, 0, **{"model.blocks": "2"})
    for _ in range(2):  # no config among their params (made by hand, or by another tool): a configuration each
        bare = client.create_run(grid.exp, tags={names.TAG_ROLE: names.ROLE_JOB})
        client.log_batch(bare.info.run_id, metrics=[Metric(names.VAL_AUC, 0.7, 0, 0)],
                         params=[Param("best_hp.model.blocks", "3")])
        client.set_terminated(bare.info.run_id, "FINISHED")
    brier = Sweep(client, "brier")  # lower is better
    brier.config(three(0.10), metric=names.TEST_BRIER)
    brier.config(three(0.20), metric=names.TEST_BRIER, **{"model.blocks": "2"})
    return uri, client


def grouped(client, experiment, metric=names.VAL_AUC, confidence=0.95):
    found, left = groups.group(board(client, experiment, metric), metric, confidence)
    return {g.configuration: g.record() for g in found}, left


def board(client, *args, **kwargs):
    """The leaderboard of the store `client` (an MlflowClient) is on."""
    return leaderboard.leaderboard(*args, store=Store(client.tracking_uri), **kwargs)


def test_the_seeds_of_a_configuration_are_one_row_and_ties_with_the_best_are_marked(store):
    _, client = store
    rows, left = grouped(client, "screen")
    a, b = rows["model.blocks=3 optimizer.rho=0.9"], rows["model.blocks=3 optimizer.rho=0.8"]
    c, d = rows["model.blocks=2 optimizer.rho=0.9"], rows["model.blocks=5 optimizer.rho=0.9"]
    assert [g["configuration"] for g in rows.values()] == [a["configuration"], b["configuration"], d["configuration"],
                                                          c["configuration"]]
    assert (a["rank"], a["verdict"], a["n_seeds"], a["seeds"]) == (1, groups.BEST, 3, ["0", "1", "2"])
    assert a["mean"] == pytest.approx(0.90) and a["sd"] == pytest.approx(0.01)
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((0.90 - 0.01 * 4.302653 / math.sqrt(3),
                                                         0.90 + 0.01 * 4.302653 / math.sqrt(3)))  # t(0.975, 2)
    assert b["verdict"] == groups.TIED and b["difference"] == pytest.approx(-0.9 * HALF)
    assert (b["difference_low"], b["difference_high"]) == pytest.approx((-1.9 * HALF, 0.1 * HALF))
    assert c["verdict"] == groups.WORSE and c["mean"] == pytest.approx(0.80) and c["n_seeds"] == 3
    assert d["verdict"] == groups.UNTESTED and d["sd"] is None and d["difference"] is None
    assert left == {"not finished": 1, "reruns": 1, "replaced by a restart": 1}
    assert a["means"][names.TEST_AUC] == pytest.approx(0.85) and a["seed_sd_pooled"] == pytest.approx(0.01)


@pytest.mark.parametrize("side, verdict", [("inside", groups.TIED), ("outside", groups.WORSE)])
def test_the_tie_line_is_welchs_interval_at_the_confidence(store, side, verdict):
    _, client = store
    rows, _ = grouped(client, side)
    assert [g["verdict"] for g in rows.values()] == [groups.BEST, verdict]
    wider, _ = grouped(client, "outside", confidence=0.99)  # a wider interval reaches 0 again
    assert list(wider.values())[1]["verdict"] == groups.TIED


def test_lower_is_better_metrics_rank_and_test_the_other_way(store):
    _, client = store
    rows, _ = grouped(client, "brier", names.TEST_BRIER)
    assert [(g["mean"], g["verdict"]) for g in rows.values()] == [(pytest.approx(0.10), groups.BEST),
                                                                  (pytest.approx(0.20), groups.WORSE)]


def test_welch_matches_scipy_with_unequal_seeds_and_spreads():
    from scipy import stats

    best, other = [0.91, 0.93, 0.90, 0.92, 0.95], [0.88, 0.80, 0.93]
    diff = seeds.versus(seeds.spread(best, 0.9), seeds.spread(other, 0.9), 0.9)
    expected = stats.ttest_ind(other, best, equal_var=False).confidence_interval(0.9)
    assert (diff.low, diff.high) == pytest.approx((expected.low, expected.high)) and diff.tied
    same = seeds.spread([0.9, 0.9], 0.95)
    assert seeds.versus(same, same, 0.95).tied and not seeds.versus(same, seeds.spread([0.8, 0.8], 0.95), 0.95).tied
    assert seeds.versus(seeds.spread([0.9], 0.95), same, 0.95) is None


def test_a_lone_seed_is_never_the_best_it_is_untested(tmp_path):
    client = mlflow.MlflowClient(empty_store(tmp_path))
    sweep = Sweep(client, "lone")
    sweep.job(0.99, 0, **{"model.blocks": "4"})
    sweep.config(three(0.90))
    rows, _ = grouped(client, "lone")
    assert [(g["rank"], g["verdict"]) for g in rows.values()] == [(1, groups.UNTESTED), (2, groups.BEST)]
    found, _ = groups.group(board(client, "lone", names.TEST_AUC), names.TEST_AUC, 0.95)
    caption = groups.caption(found[:1], names.TEST_AUC, 0.95, {})
    assert "no configuration has 2 seeds" in caption


def test_compare_groups_by_default_when_seeds_repeat_and_keeps_the_job_view(store, capsys, monkeypatch):
    uri, _ = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert cli(["compare", "--experiment", "screen", "--metric", "val_auc", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["rank"], r["verdict"], r["n_seeds"]) for r in rows] == [(1, "best", 3), (2, "tied", 3),
                                                                      (3, "untested", 1), (4, "worse", 3)]
    assert cli(["compare", "--experiment", "screen", "--metric", "val_auc", "--format", "csv", "--top", "2"]) == 0
    records = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["verdict"] for r in records] == ["best", "tied"] and float(records[1]["difference"]) < 0
    assert records[0]["seeds"] == "0;1;2" and float(records[0]["test_auc_mean"]) == pytest.approx(0.85)
    assert cli(["compare", "--experiment", "screen", "--metric", "val_auc", "--format", "table"]) == 0
    text = capsys.readouterr().out
    assert "tied with best" in text and "worse than best" in text and "1 seed: not tested" in text
    assert "Welch's t interval (95%)" in text and "1 rerun" in text
    assert cli(["compare", "--experiment", "screen", "--by", "job", "--format", "json"]) == 0
    jobs = json.loads(capsys.readouterr().out)
    assert len(jobs) == 13 and all("run_name" in r and r["config_key"] for r in jobs)
    assert cli(["compare", "--experiment", "screen", "--by", "job", "--top", "2", "--format", "json"]) == 0
    assert [r["rank"] for r in json.loads(capsys.readouterr().out)][:2] == [1, 2]
    with pytest.raises(SystemExit) as bad:
        cli(["compare", "--confidence", "95"])
    assert bad.value.code == 2 and "not between 0 and 1" in capsys.readouterr().err


def test_without_repeated_seeds_compare_stays_one_row_per_job(store, capsys, monkeypatch):
    uri, client = store
    assert not groups.seeded(board(client, "grid", names.VAL_AUC))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert cli(["compare", "--experiment", "grid", "--format", "json"]) == 0
    assert all("run_id" in r for r in json.loads(capsys.readouterr().out))
    assert cli(["compare", "--experiment", "grid", "--by", "config", "--metric", "val_auc", "--format", "json"]) == 0
    assert [r["verdict"] for r in json.loads(capsys.readouterr().out)] == ["untested"] * 4
    assert cli(["compare", "--experiment", "grid", "--by", "config", "--format", "json"]) == 0  # test_auc: 2 lack it
    assert [(r["rank"], r["verdict"]) for r in json.loads(capsys.readouterr().out)][2:] == [(None, None)] * 2


# -- importance -------------------------------------------------------------------------------------


def importance_sweep(client, name: str, n_jobs: int | None = None) -> None:
    """blocks drives the metric (0.1 a block), rho does nothing, nor does the tuner's learning rate (another
    in every job: a forest can learn the seed noise from it, and does, on the jobs it was fitted on)."""
    sweep, rng = Sweep(client, name), np.random.default_rng(0)
    grid = [(b, r, s) for b in (2, 3, 4) for r in ("0.8", "0.9") for s in range(3)][:n_jobs]
    for blocks, rho, seed in grid:
        sweep.job(0.5 + 0.1 * blocks + rng.normal(0, 0.01), seed,
                  **{"model.blocks": str(blocks), "model.filters": str(16 * blocks), "optimizer.rho": rho,
                     "best_hp.optimizer.learning_rate": f"{10 ** rng.uniform(-4, -2):.6g}"})


def test_importance_ranks_the_key_that_drives_the_metric_and_not_the_noise(store, capsys, monkeypatch):
    uri, client = store
    importance_sweep(client, "drives")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert cli(["compare", "--experiment", "drives", "--metric", "val_auc", "--importance", "--resamples", "12",
                "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    first, *noise = result["importances"]
    assert first["keys"] == ["model.blocks", "model.filters"] and first["values"] == 3  # they change together
    assert first["low"] > 0.02 and first["clear_of_zero"]
    assert sorted(i["key"] for i in noise) == ["best_hp.optimizer.learning_rate", "optimizer.rho"]
    assert all(i["low"] <= 0 <= i["high"] and not i["clear_of_zero"] for i in noise), noise
    assert result["jobs"] == 18 and result["constant_keys"] == 2  # trainer.epochs, best_hp.model.dropout
    assert result["seed_sd_pooled"] == pytest.approx(0.01, abs=0.005) and result["error"] < result["baseline_error"]
    out = io.StringIO()
    explained.render(result, "table", out)
    text = out.getvalue()
    assert "| model.blocks (+1 keys that change with it)" in text and "not told from noise" in text


@pytest.mark.parametrize("n_jobs, answered", [(importance.MIN_JOBS - 1, False), (importance.MIN_JOBS, True)])
def test_importance_says_when_there_are_too_few_jobs(tmp_path, capsys, monkeypatch, n_jobs, answered):
    client = mlflow.MlflowClient(empty_store(tmp_path))
    importance_sweep(client, "few", n_jobs)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    assert cli(["compare", "--experiment", "few", "--importance", "--resamples", "4", "--format", "table"]) == 0
    text = capsys.readouterr().out
    assert ("too few to say which keys matter" in text) is not answered
    assert ("| key" in text) is answered


# -- the table in a log file ------------------------------------------------------------------------


def header_names(columns):
    return [c.replace("\n", " ") for c in columns]


def test_off_a_terminal_the_table_keeps_every_column_name_whole(store):
    _, client = store
    out = io.StringIO()  # not a terminal, as a log file
    rows = board(client, "screen")
    table.render(rows, names.TEST_AUC, "table", out=out)
    lines = out.getvalue().splitlines()
    header = next(line for line in lines if line.startswith("| rank"))
    assert all(f"| {name} " in header for name in header_names(table.table_columns(names.TEST_AUC, rows)))
    assert sum(line.startswith("| ") for line in lines) == 1 + len(rows)  # a line per job


@pytest.mark.parametrize("experiment, seeded", [("screen", True), ("grid", False)])
def test_the_end_of_sweep_summary_reads_whole_in_a_log_file(store, monkeypatch, experiment, seeded):
    uri, client = store
    monkeypatch.setattr(summary, "SWEEPS", [summary.Sweep(experiment, uri, None, names.VAL_AUC, "/nowhere", 0.95)])
    out = io.StringIO()  # not a terminal: what a log file gets
    summary.summarize(out)
    text = out.getvalue()
    rows = board(client, experiment, names.VAL_AUC)
    columns = groups.table_columns(names.VAL_AUC, 0.95) if seeded else table.table_columns(names.VAL_AUC, rows)
    header = next(line for line in text.splitlines() if line.startswith("| rank"))
    assert all(f"| {name} " in header for name in header_names(columns))
    assert (f"compare --experiment {experiment} --by job" in text) is seeded
    assert "Open the runs in the MLflow UI" in text


# -- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_toy_sweep_over_seeds_ends_with_one_row_per_configuration(tmp_path):
    proc = run_pneumo(["train", "-m", *TOY, "experiment=seeds", "seed=0,1", "augmentation=none,light"], tmp_path)
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| rank"))
    assert all(f"| {name} " in header for name in header_names(groups.table_columns(names.VAL_AUC, 0.95)))
    env = {"MLFLOW_TRACKING_URI": tracking_uri(tmp_path)}
    rows = json.loads(run_pneumo(["compare", "--experiment", "seeds", "--format", "json"], tmp_path, env_extra=env,
                                 hydra=False).stdout)
    assert sorted(r["configuration"].split()[-1] for r in rows) == ["augmentation=light", "augmentation=none"]
    assert all("seed=" not in r["configuration"] for r in rows)
    assert "| augmentation=none " in proc.stdout and "every configuration: data=synthetic" in proc.stdout
    assert all(r["n_seeds"] == 2 and sorted(r["seeds"]) == ["0", "1"] for r in rows)
    assert rows[0]["verdict"] == "best" and rows[1]["verdict"] in ("tied", "worse")
    jobs = json.loads(run_pneumo(["compare", "--experiment", "seeds", "--by", "job", "--format", "json"], tmp_path,
                                 env_extra=env, hydra=False).stdout)
    assert len(jobs) == 4 and len({j["config_key"] for j in jobs}) == 2 and len({j["job_key"] for j in jobs}) == 4
    client = mlflow.MlflowClient(tracking_uri(tmp_path))
    for job in jobs:  # the tag the job wrote is what a job recorded without it gets from its params
        run = client.get_run(job["run_id"])
        tags = run.data.tags
        assert tags[names.TAG_CONFIG_KEY] == job["config_key"] == record.config_key(
            run.data.params, tags[names.TAG_DATA_DIGEST], tags[names.TAG_TEST_DIGEST])
