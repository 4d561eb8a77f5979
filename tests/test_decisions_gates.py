"""The promotion gates a version passes on its own, pinned at their lines (issue 27): the AUC-CI gate,
both floors and their defaults, READY/FINISHED, the no-guard gate, where each number is read from.
A case just inside and one just outside each line, so that moving it, flipping > into >=, or
reading the wrong number (the point AUC for its lower bound) fails here.

No store and no training: `own_gates` reads MLflow entities, built here in memory.
"""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.entities import Metric, Run, RunData, RunInfo, RunTag
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from pneumo.record import names
from pneumo.record.door import as_run, as_version
from pneumo.release import gates, promote, registry

AUC_LOW, AUC_HIGH = names.ci_names(names.TEST_AUC)
GOOD = {names.TEST_AUC: 0.9, AUC_LOW: 0.8, AUC_HIGH: 0.95, names.TEST_SENSITIVITY: 0.95,
        names.TEST_SPECIFICITY: 0.6, names.THRESHOLD: 0.5}


def below(x: float) -> float:
    return float(np.nextafter(x, -np.inf))


def above(x: float) -> float:
    return float(np.nextafter(x, np.inf))


def entities(metrics: dict | None = None, *, status="READY", run_status="FINISHED", tags=None, run_tags=None):
    mv = ModelVersion(names.MODEL_NAME, "7", 0, run_id="r7", status=status,
                      tags=[ModelVersionTag(k, str(v)) for k, v in (tags or {}).items()])
    run = Run(RunInfo("r7", "1", "u", run_status, 0, 1, "active"),
              RunData(metrics=[Metric(k, v, 0, 0) for k, v in (GOOD if metrics is None else metrics).items()],
                      tags=[RunTag(k, v) for k, v in (run_tags or {}).items()]))
    return as_version(mv), as_run(run)


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
    assert warning.endswith(": virus pneumonia is missed more often than the pooled sensitivity says (a warning: "
                            "per-subtype CIs are wide)")
    mv, run = entities({**GOOD, name: 0.75}, tags={lo: 0.6, hi: 0.85})  # the CI on the version only: still read
    assert gates.subtype_warnings(mv, run, 0.9)[0].startswith(f"{name} 0.75 (")
    for ci in ({}, {lo: 0.6}, {hi: 0.85}):  # a CI not logged whole: the value alone, no bracket
        mv, run = entities({**GOOD, name: 0.75, **ci})
        assert gates.subtype_warnings(mv, run, 0.9)[0].startswith(f"{name} 0.75 below the 0.9 floor: virus ")


def test_skipped_versions_are_capped_at_twenty_lines():
    assert gates.capped([f"v{i}" for i in range(20)]) == [f"v{i}" for i in range(20)]
    assert gates.capped([f"v{i}" for i in range(21)])[-1] == "... and 1 more versions that cannot pass"
    assert len(gates.capped([f"v{i}" for i in range(21)])) == 21
