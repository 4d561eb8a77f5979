"""The gates a version must pass to take an alias (default `champion`) only if every gate passes:

- its registration is READY and its run FINISHED (a FAILED or KILLED job's
  numbers describe a job that did not complete);
- it beats chance: the lower bound of the job's patient-bootstrap CI on test
  AUC (`test_auc_ci_low`) is above 0.5. A constant predictor (AUC 0.5 with
  sensitivity 1.0 and specificity 0.0) fails here;
- test sensitivity >= `min_sensitivity` (0.9) and test specificity >=
  `min_specificity` (0.25): "every image is pneumonia" clears any sensitivity
  floor, so sensitivity alone gates nothing;
- it carries its out-of-distribution guard: a version whose job could not fit it (tagged
  `names.TAG_NO_GUARD`, with why) would label every decodable film, however foreign;
- when a champion exists: it was tested on the same images and beats the
  champion in a paired patient-level bootstrap (lower CI bound of the
  improvement above zero: a tie is not a win).

Without `version`, promote ranks only the versions that can pass: those
failing a gate checked without the bootstrap (status, the AUC bound, the
floors, and the champion's test set) are skipped, and the ones that ranked
above the candidate are named with their reason. `force` (with a reason) is the only way past a
failed gate, and only for a version named explicitly or the best passing one.
"""

from __future__ import annotations

import tempfile

from pneumo.evaluation import format
from pneumo.record import names
from pneumo.record.entities import FINISHED, READY, Run, Version
from pneumo.release.registry import logged, read_predictions, tested_on

PAIRED_RESAMPLES = 2000


PAIRED_SEED = 0


THRESHOLD_FREE = {names.TEST_AUC, names.TEST_AUPRC, names.TEST_BRIER}  # the paired test needs no cut for these


MIN_SENSITIVITY = 0.9


# Refuses an operating point that calls (nearly) every image pneumonia: that is how a useless
# model clears the sensitivity floor. Not 0.5: at the default operating point (validation
# sensitivity 0.95) the `make demo` jobs measured 0.26-0.35 (43 healthy test images; the best's
# 95% CI [0.16, 0.54]) with test AUC CIs starting at 0.59-0.77, and 0.5 refused them all, the
# README's champion included. A site with a specificity requirement sets --min-specificity.
MIN_SPECIFICITY = 0.25


CHANCE_AUC = 0.5  # the test AUC's lower CI bound must be above it: a CI reaching 0.5 allows a coin flip


AUC_CI_LOW = names.ci_names(names.TEST_AUC)[0]  # logged by the job (patient-level bootstrap, 95%)


SKIPPED_SHOWN = 20  # skipped versions named in a decision or error; the rest are counted


def own_gates(mv: Version, run: Run | None, min_sensitivity: float,
              min_specificity: float) -> tuple[list[str], list[str], dict]:
    """The gates a version passes or fails on its own, with no champion or bootstrap: (passed, failed, numbers)."""
    status = run.status if run is not None else None
    nums = {"run_status": status, "min_sensitivity": min_sensitivity,
            "sensitivity": logged(mv, run, names.TEST_SENSITIVITY), "min_specificity": min_specificity,
            "specificity": logged(mv, run, names.TEST_SPECIFICITY), AUC_CI_LOW: logged(mv, run, AUC_CI_LOW)}
    ok, fail = [], []
    if mv.status != READY:
        fail.append(f"version {mv.version} registration status {mv.status} (must be {READY})")
    if status == FINISHED:
        ok.append(f"run {mv.run_id} status {FINISHED}")
    else:
        fail.append(f"run {mv.run_id} status {status or 'unknown (run not found)'} (must be {FINISHED})")
    no_guard = mv.no_guard
    if no_guard is not None:
        fail.append(f"registered without its out-of-distribution guard ({no_guard}): it would label every "
                    "decodable film, however foreign")
    low = nums[AUC_CI_LOW]
    if low is None:
        fail.append(f"{AUC_CI_LOW} not logged: nothing shows the model beats chance (AUC {CHANCE_AUC})")
    elif low > CHANCE_AUC:
        ok.append(f"{AUC_CI_LOW} {format.value(low)} above {CHANCE_AUC}: better than chance")
    else:
        fail.append(f"{AUC_CI_LOW} {format.value(low)} not above {CHANCE_AUC}: the test AUC's CI includes chance")
    for name, key in ((names.TEST_SENSITIVITY, "sensitivity"), (names.TEST_SPECIFICITY, "specificity")):
        value, floor = nums[key], nums[f"min_{key}"]
        if value is None:
            fail.append(f"{name} not logged: the {floor} floor cannot be checked")
        else:
            (ok if value >= floor else fail).append(f"{name} {format.value(value)} {'>=' if value >= floor else 'below'} "
                                                    f"{floor}")
    return ok, fail, nums


def subtype_warnings(mv: Version, run: Run | None, min_sensitivity: float) -> list[str]:
    """A warning per pneumonia subtype whose test sensitivity is below the floor.

    A warning, not a refusal: a subtype holds a fraction of the test's PNEUMONIA films (Kermany's
    viral ones are about a third, from a few dozen patients), so its patient-bootstrap CI is wide
    and a point estimate under the floor is often within noise of it; the pooled sensitivity gate
    already refuses a model that misses pneumonia. The reviewer is told which subtype, and its CI.
    """
    from pneumo.data.subtypes import SUBTYPES

    out = []
    for s in SUBTYPES:
        name = names.subtype_metric(names.TEST_SENSITIVITY, s)
        value = logged(mv, run, name)
        if value is not None and value < min_sensitivity:
            low, high = (logged(mv, run, b) for b in names.ci_names(name))
            ci = f" ({format.interval(value, low, high)})" if low is not None and high is not None else ""
            out.append(f"{name} {format.value(value)}{ci} below the {min_sensitivity} floor: {s} pneumonia is "
                       "missed more often than the pooled sensitivity says (a warning: per-subtype CIs are wide)")
    return out


def best_passing(store, metric: str, champion: Version | None, min_sensitivity: float,
                 min_specificity: float) -> tuple[Version, list[str]]:
    """The version ranked first by the metric among those that can pass, and why each one above it cannot.

    "Can pass": the gates that need no bootstrap (own_gates, and the champion's test set).
    The champion itself is never skipped: when it ranks first there is nothing to do.
    """
    higher = names.higher_is_better(metric)
    ranked = []
    for mv in store.versions():
        run, value = None, mv.number_logged(metric)
        if value is None:  # only versions registered without metric tags cost a call here
            run = store.find_run(mv.run_id)
            value = logged(mv, run, metric)
        if value is not None:
            is_champ = champion is not None and str(mv.version) == str(champion.version)
            ranked.append(((-value if higher else value), not is_champ, int(mv.version), value, mv, run))
    if not ranked:
        raise LookupError(f"no registered version of {names.MODEL_NAME!r} has a value for {metric}")
    ranked.sort(key=lambda t: t[:3])
    champ_digest = tested_on(champion, store.find_run(champion.run_id)) if champion is not None else None
    skipped = []
    for _, is_challenger, _, value, mv, run in ranked:
        if not is_challenger:
            return mv, skipped
        run = run or store.find_run(mv.run_id)  # one call per version, only down to the first that can pass
        _, fail, _ = own_gates(mv, run, min_sensitivity, min_specificity)
        if champion is not None and (not tested_on(mv, run) or tested_on(mv, run) != champ_digest):
            fail.append(f"tested on {tested_on(mv, run)}, champion version {champion.version} on {champ_digest}: "
                        "not comparable")
        if not fail:
            return mv, skipped
        skipped.append(f"version {mv.version} ({metric} {format.value(value)}): {'; '.join(fail)}")
    raise LookupError(f"no registered version of {names.MODEL_NAME!r} can pass the gates; skipped:\n"
                      + "\n".join(f"  {line}" for line in capped(skipped))
                      + "\n(to promote one anyway: --version N --force --reason TEXT)")


def capped(lines: list[str]) -> list[str]:
    """The first SKIPPED_SHOWN lines, and how many more: a sweep of failed jobs must not flood the printout."""
    more = len(lines) - SKIPPED_SHOWN
    return lines[:SKIPPED_SHOWN] + ([f"... and {more} more versions that cannot pass"] if more > 0 else [])


def _predictions(store, run_id: str, tmp: str) -> list[tuple[str, str, int, float]]:
    """A job's test predictions (a moved or copied store's are under its own folder)."""
    return read_predictions(store.download(run_id, names.PREDICTIONS_ARTIFACT, tmp))


def paired_test(store, cand: Version, champ: Version, metric, thresholds, confidence) -> tuple[dict, str | None]:
    """Paired bootstrap of metric(candidate) - metric(champion) on their common test images."""
    import numpy as np  # late, as scipy's and scikit-learn's: `pneumo --help` reads this module's floors

    from pneumo.evaluation.stats import paired_bootstrap

    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        try:
            old, new = _predictions(store, champ.run_id, a), _predictions(store, cand.run_id, b)
        except Exception as err:  # noqa: BLE001 -- any failure to read is a failed gate, reported
            return {}, f"cannot read {names.PREDICTIONS_ARTIFACT} of both runs: {err}"
    if [r[:3] for r in old] != [r[:3] for r in new]:
        return {}, (f"{names.PREDICTIONS_ARTIFACT} of the two runs hold different images or labels "
                    f"({len(old)} vs {len(new)} rows) despite equal test digests")
    y = np.array([r[2] for r in new])
    patients = np.array([r[1] for r in new])
    res = paired_bootstrap(y, np.array([r[3] for r in old]), np.array([r[3] for r in new]), patients, metric,
                           thresholds[1], thresholds[0], n=PAIRED_RESAMPLES, confidence=confidence,
                           seed=PAIRED_SEED)
    return {"delta": res.delta, "ci_low": res.ci_low, "ci_high": res.ci_high, "p_value": res.p_value,
            "confidence": confidence, "n_images": len(y), "n_patients": len(set(patients))}, None
