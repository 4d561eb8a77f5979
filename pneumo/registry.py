"""Registered versions: the job's record of its model, promotion behind gates, and rollback.

A job writes its model and what promotion needs through this module (`log_predictions`,
`log_model`, `version_tags`, `register`), and promotion reads them back here: each format
is written in one function, beside its reader. It never trains or scores a model itself. A version
takes an alias (default `champion`) only if every gate passes:

- its registration is READY and its run FINISHED (a FAILED or KILLED job's
  numbers describe a job that did not complete);
- it beats chance: the lower bound of the job's patient-bootstrap CI on test
  AUC (`test_auc_ci_low`) is above 0.5. A constant predictor (AUC 0.5 with
  sensitivity 1.0 and specificity 0.0) fails here;
- test sensitivity >= `min_sensitivity` (0.9) and test specificity >=
  `min_specificity` (0.25): "every image is pneumonia" clears any sensitivity
  floor, so sensitivity alone gates nothing;
- when a champion exists: it was tested on the same images and beats the
  champion in a paired patient-level bootstrap (lower CI bound of the
  improvement above zero: a tie is not a win).

Without `version`, promote ranks only the versions that can pass: those
failing a gate checked without the bootstrap (status, the AUC bound, the
floors, and the champion's test set) are skipped, and the ones that ranked
above the candidate are named with their reason. `force` (with a reason) is the only way past a
failed gate, and only for a version named explicitly or the best passing one.
Every decision is written as `promotion.*` tags on the candidate version (the latest) and
appended to its model card, the version's description (each one; pneumo.card).

Rollback swaps: the `previous` version takes the alias back and the displaced
one becomes `previous`, so a second rollback undoes the first. It leaves the
`promotion.*` tags (the record of each decision) as they are and tags the
restored version `rollback.restored_at`, the displaced one `rollback.displaced_at`.

MLflow is imported inside functions: the CLI imports this module for its
defaults and must start fast.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pneumo import metrics as M

PAIRED_RESAMPLES = 2000
PAIRED_SEED = 0
THRESHOLD_FREE = {M.TEST_AUC, M.TEST_AUPRC, M.TEST_BRIER}  # the paired test needs no cut for these
TAG_PREFIX = "promotion."
TAG_MAX = 5000  # characters; MLflow's limit on a model-version tag value
MIN_SENSITIVITY = 0.9
# Refuses an operating point that calls (nearly) every image pneumonia: that is how a useless
# model clears the sensitivity floor. Not 0.5: at the default operating point (validation
# sensitivity 0.95) the `make demo` jobs measured 0.26-0.35 (43 healthy test images; the best's
# 95% CI [0.16, 0.54]) with test AUC CIs starting at 0.59-0.77, and 0.5 refused them all, the
# README's champion included. A site with a specificity requirement sets --min-specificity.
MIN_SPECIFICITY = 0.25
CHANCE_AUC = 0.5  # the test AUC's lower CI bound must be above it: a CI reaching 0.5 allows a coin flip
AUC_CI_LOW = M.ci_names(M.TEST_AUC)[0]  # logged by the job (patient-level bootstrap, 95%)
SKIPPED_SHOWN = 20  # skipped versions named in a decision or error; the rest are counted


PREDICTION_COLUMNS = ("hash", "patient", "y_true", "probability")  # of M.PREDICTIONS_ARTIFACT
REGISTERED_TAG = "registered_version"  # on the job run


# -- the job's record ------------------------------------------------------------------


def log_predictions(client, run_id: str, hashes, patients, y, probabilities) -> None:
    """The job's test predictions, one row an image: what a paired bootstrap between two versions reads."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(PREDICTION_COLUMNS)
    writer.writerows((h, p, int(t), round(float(q), 6)) for h, p, t, q in zip(hashes, patients, y, probabilities))
    client.log_text(run_id, buf.getvalue(), M.PREDICTIONS_ARTIFACT)


def _read_predictions(path) -> list[tuple[str, str, int, float]]:
    with open(path, newline="") as f:
        rows = [(r["hash"], r["patient"], int(float(r["y_true"])), float(r["probability"])) for r in csv.DictReader(f)]
    return sorted(rows)  # aligned by (hash, patient): duplicate images (same bytes) score alike


def version_tags(run_id: str, data_digest: str, test_digest: str, threshold: float, results: dict) -> dict[str, str]:
    """What a registered version carries about its job: promotion and the registry UI read these."""
    return {
        M.VERSION_TAG_RUN_ID: run_id,
        M.TAG_DATA_DIGEST: data_digest,
        M.TAG_TEST_DIGEST: test_digest,
        M.THRESHOLD: str(threshold),
        **{m: str(results[m]) for m in M.TEST_METRICS if m in results},
    }


def registered(client, run_id: str):
    """The version already registered from this run (a resumed job registers once), or None."""
    found = client.search_model_versions(f"name='{M.MODEL_NAME}' and run_id='{run_id}'")
    return found[0] if found else None


def log_model(model, image_size: int, threshold: float):
    """The Keras model as an MLflow pyfunc on the active run: models-from-code (pneumo/serving.py)
    plus a safe-mode .keras file and its preprocessing size and threshold; no pickle."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from pneumo import paths

    signature = ModelSignature(
        inputs=Schema([ColSpec("binary", "image")]),
        outputs=Schema([ColSpec("double", "probability"), ColSpec("string", "label"), ColSpec("string", "error")]),
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.save(tmp / "model.keras")
        (tmp / "meta.json").write_text(json.dumps({"image_size": image_size, "threshold": threshold}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # type-hint and input-example advice
            return mlflow.pyfunc.log_model(
                name="model",
                python_model=str(paths.ROOT / "pneumo" / "serving.py"),
                artifacts={"keras_model": str(tmp / "model.keras"), "meta": str(tmp / "meta.json")},
                code_paths=[str(paths.ROOT / "pneumo")],
                signature=signature,
                pip_requirements=requirements(),
            )


def requirements() -> list[str]:
    """What serving the model needs, pinned to this process's versions, the Keras backend it
    was trained on included (a model from a JAX job gets jax + jaxlib, not tensorflow)."""
    from importlib.metadata import version

    import keras

    from pneumo import backend

    pkgs = {p: version(p) for p in ("mlflow", "keras", "numpy", "pandas", "pillow")}
    pkgs.update(backend.packages(keras.backend.backend()))
    return [f"{p}=={v}" for p, v in pkgs.items()]


def register(client, run_id: str, model_uri: str, tags: dict[str, str]) -> str:
    """A new version of the model from `model_uri`, tagged; the job run is tagged with its number."""
    import mlflow

    from pneumo import quiet

    with quiet.printed():  # MLflow prints "Successfully registered model ..." on stderr
        mv = mlflow.register_model(model_uri, M.MODEL_NAME, tags=tags)
    client.set_tag(run_id, REGISTERED_TAG, mv.version)
    return str(mv.version)


# -- decisions ---------------------------------------------------------------------------


@dataclass
class Decision:
    promoted: bool  # the alias moved (or, with dry_run, would move)
    version: str | None
    previous: str | None  # the version displaced from the alias (None: there was none / no move)
    reasons: list[str]
    numbers: dict = field(default_factory=dict)
    alias: str = M.CHAMPION
    dry_run: bool = False
    forced: bool = False
    noop: bool = False  # the candidate already holds the alias
    rollback: bool = False

    def summary(self) -> str:
        if self.noop:
            head = f"nothing to do: version {self.version} already holds '{self.alias}'"
        else:
            verb = ("would promote" if self.dry_run else "PROMOTED") if self.promoted else "REFUSED"
            head = f"{verb} version {self.version} to '{self.alias}'" + (" (forced)" if self.forced else "")
            if self.rollback:
                head = f"{'would roll back' if self.dry_run else 'ROLLED BACK'} '{self.alias}' to version {self.version}"
            if self.previous is not None:
                head += f"; version {self.previous} becomes '{previous_alias(self.alias)}'"
            if self.dry_run:
                head = "[dry run] " + head
        lines = [head, *(f"  - {r}" for r in self.reasons)]
        lines += [f"    {k}: {_show(v)}" for k, v in self.numbers.items() if v is not None]
        return "\n".join(lines)


def previous_alias(alias: str) -> str:
    return M.PREVIOUS if alias == M.CHAMPION else f"{alias}-{M.PREVIOUS}"


# -- reading versions --------------------------------------------------------------


def _by_alias(c, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version_by_alias(M.MODEL_NAME, alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def _all_versions(c) -> list:
    from pneumo.tracking import pages

    return list(pages(c.search_model_versions, f"name='{M.MODEL_NAME}'"))


def _logged(mv, run, name: str):
    """A number the job logged: the run's metric, else the version's tag (string)."""
    value = M.finite(run.data.metrics.get(name)) if run is not None else None
    return value if value is not None else M.finite((mv.tags or {}).get(name))


def _digest(mv, run):
    return (mv.tags or {}).get(M.TAG_TEST_DIGEST) or (run.data.tags.get(M.TAG_TEST_DIGEST) if run else None)


def _run_id(mv):
    return mv.run_id or (mv.tags or {}).get(M.VERSION_TAG_RUN_ID)


def _run(c, run_id):
    from mlflow.exceptions import MlflowException

    try:
        return c.get_run(run_id) if run_id else None
    except MlflowException:
        return None


def _own_gates(mv, run, min_sensitivity: float, min_specificity: float) -> tuple[list[str], list[str], dict]:
    """The gates a version passes or fails on its own, with no champion or bootstrap: (passed, failed, numbers)."""
    status = run.info.status if run is not None else None
    nums = {"run_status": status, "min_sensitivity": min_sensitivity,
            "sensitivity": _logged(mv, run, M.TEST_SENSITIVITY), "min_specificity": min_specificity,
            "specificity": _logged(mv, run, M.TEST_SPECIFICITY), AUC_CI_LOW: _logged(mv, run, AUC_CI_LOW)}
    ok, fail = [], []
    if mv.status != "READY":
        fail.append(f"version {mv.version} registration status {mv.status} (must be READY)")
    if status == "FINISHED":
        ok.append(f"run {_run_id(mv)} status FINISHED")
    else:
        fail.append(f"run {_run_id(mv)} status {status or 'unknown (run not found)'} (must be FINISHED)")
    low = nums[AUC_CI_LOW]
    if low is None:
        fail.append(f"{AUC_CI_LOW} not logged: nothing shows the model beats chance (AUC {CHANCE_AUC})")
    elif low > CHANCE_AUC:
        ok.append(f"{AUC_CI_LOW} {_show(low)} above {CHANCE_AUC}: better than chance")
    else:
        fail.append(f"{AUC_CI_LOW} {_show(low)} not above {CHANCE_AUC}: the test AUC's CI includes chance")
    for name, key in ((M.TEST_SENSITIVITY, "sensitivity"), (M.TEST_SPECIFICITY, "specificity")):
        value, floor = nums[key], nums[f"min_{key}"]
        if value is None:
            fail.append(f"{name} not logged: the {floor} floor cannot be checked")
        else:
            (ok if value >= floor else fail).append(f"{name} {_show(value)} {'>=' if value >= floor else 'below'} "
                                                    f"{floor}")
    return ok, fail, nums


def _best(c, metric: str, champion, min_sensitivity: float, min_specificity: float) -> tuple[object, list[str]]:
    """The version ranked first by the metric among those that can pass, and why each one above it cannot.

    "Can pass": the gates that need no bootstrap (_own_gates, and the champion's test set).
    The champion itself is never skipped: when it ranks first there is nothing to do.
    """
    higher = M.higher_is_better(metric)
    ranked = []
    for mv in _all_versions(c):
        run, value = None, M.finite((mv.tags or {}).get(metric))
        if value is None:  # only versions registered without metric tags cost a call here
            run = _run(c, _run_id(mv))
            value = _logged(mv, run, metric)
        if value is not None:
            is_champ = champion is not None and str(mv.version) == str(champion.version)
            ranked.append(((-value if higher else value), not is_champ, int(mv.version), value, mv, run))
    if not ranked:
        raise LookupError(f"no registered version of {M.MODEL_NAME!r} has a value for {metric}")
    ranked.sort(key=lambda t: t[:3])
    champ_digest = _digest(champion, _run(c, _run_id(champion))) if champion is not None else None
    skipped = []
    for _, is_challenger, _, value, mv, run in ranked:
        if not is_challenger:
            return mv, skipped
        run = run or _run(c, _run_id(mv))  # one call per version, only down to the first that can pass
        _, fail, _ = _own_gates(mv, run, min_sensitivity, min_specificity)
        if champion is not None and (not _digest(mv, run) or _digest(mv, run) != champ_digest):
            fail.append(f"tested on {_digest(mv, run)}, champion version {champion.version} on {champ_digest}: "
                        "not comparable")
        if not fail:
            return mv, skipped
        skipped.append(f"version {mv.version} ({metric} {_show(value)}): {'; '.join(fail)}")
    raise LookupError(f"no registered version of {M.MODEL_NAME!r} can pass the gates; skipped:\n"
                      + "\n".join(f"  {line}" for line in _capped(skipped))
                      + "\n(to promote one anyway: --version N --force --reason TEXT)")


def _capped(lines: list[str]) -> list[str]:
    """The first SKIPPED_SHOWN lines, and how many more: a sweep of failed jobs must not flood the printout."""
    more = len(lines) - SKIPPED_SHOWN
    return lines[:SKIPPED_SHOWN] + ([f"... and {more} more versions that cannot pass"] if more > 0 else [])


def _predictions(c, run_id: str, tmp: str) -> list[tuple[str, str, int, float]]:
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR as BAR

    before = os.environ.get(BAR.name)
    os.environ[BAR.name] = "false"  # one small CSV: a progress bar is noise in the decision printout
    try:
        return _read_predictions(c.download_artifacts(run_id, M.PREDICTIONS_ARTIFACT, tmp))
    finally:
        if before is None:
            os.environ.pop(BAR.name, None)
        else:
            os.environ[BAR.name] = before


def _paired(c, cand, champ, metric, thresholds, confidence) -> tuple[dict, str | None]:
    """Paired bootstrap of metric(candidate) - metric(champion) on their common test images."""
    import numpy as np

    from pneumo.evaluate import paired_bootstrap

    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        try:
            old, new = _predictions(c, _run_id(champ), a), _predictions(c, _run_id(cand), b)
        except Exception as err:  # noqa: BLE001 -- any failure to read is a failed gate, reported
            return {}, f"cannot read {M.PREDICTIONS_ARTIFACT} of both runs: {err}"
    if [r[:3] for r in old] != [r[:3] for r in new]:
        return {}, (f"{M.PREDICTIONS_ARTIFACT} of the two runs hold different images or labels "
                    f"({len(old)} vs {len(new)} rows) despite equal test digests")
    y = np.array([r[2] for r in new])
    patients = np.array([r[1] for r in new])
    res = paired_bootstrap(y, np.array([r[3] for r in old]), np.array([r[3] for r in new]), patients, metric,
                           thresholds[1], thresholds[0], n=PAIRED_RESAMPLES, confidence=confidence,
                           seed=PAIRED_SEED)
    return {"delta": res["delta"], "ci_low": res["ci_low"], "ci_high": res["ci_high"], "p_value": res["p_value"],
            "confidence": confidence, "n_images": len(y), "n_patients": len(set(patients))}, None


# -- promotion -----------------------------------------------------------------------


def promote(metric: str = M.TEST_AUC, version=None, alias: str = M.CHAMPION, *, confidence: float = 0.95,
            min_sensitivity: float = MIN_SENSITIVITY, min_specificity: float = MIN_SPECIFICITY,
            dry_run: bool = False, force: bool = False, reason: str | None = None, client=None) -> Decision:
    """Move `alias` to the best version that can pass by `metric` (or to `version`) if every gate passes."""
    from mlflow.exceptions import MlflowException

    if force and not (reason or "").strip():
        raise ValueError("force=True needs a non-empty reason: it is recorded on the version")
    if metric not in M.TEST_METRICS:
        raise ValueError(f"promotion compares test predictions: metric must be one of {', '.join(M.TEST_METRICS)}")
    for name, floor in (("min_sensitivity", min_sensitivity), ("min_specificity", min_specificity)):
        if not 0 <= floor <= 1:  # also refuses nan
            raise ValueError(f"{name} is a proportion: it must be between 0 and 1, got {floor}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    c = client or _connect()
    champ = _by_alias(c, alias)
    skipped = []
    if version is not None:
        try:
            cand = c.get_model_version(M.MODEL_NAME, str(version))
        except MlflowException as err:
            raise LookupError(f"{M.MODEL_NAME} has no version {version}") from err
    else:
        cand, skipped = _best(c, metric, champ, min_sensitivity, min_specificity)
    skipped = [f"skipped: {s}" for s in _capped(skipped)]
    if champ is not None and str(cand.version) == str(champ.version):
        held = (f"version {cand.version} is already the best that can pass and holds '{alias}'" if version is None
                else f"version {cand.version} holds '{alias}'")
        return Decision(False, str(cand.version), None, [held, *skipped], alias=alias, dry_run=dry_run, noop=True)

    run, higher = _run(c, _run_id(cand)), M.higher_is_better(metric)
    ok, fail, own = _own_gates(cand, run, min_sensitivity, min_specificity)
    nums = {"metric": metric, "candidate_value": _logged(cand, run, metric), **own,
            "test_digest": _digest(cand, run)}
    if champ is None:
        ok.append(f"no version holds '{alias}' yet: " + ("the best passing version takes it" if version is None
                                                          else "nothing to compare with"))
    else:
        champ_run = _run(c, _run_id(champ))
        nums.update(champion_version=str(champ.version), champion_value=_logged(champ, champ_run, metric),
                    champion_test_digest=_digest(champ, champ_run))
        if not nums["test_digest"] or nums["test_digest"] != nums["champion_test_digest"]:
            fail.append(f"different test set from champion version {champ.version} "
                        f"({nums['test_digest']} vs {nums['champion_test_digest']}): scores are not comparable")
        else:
            ok.append(f"same test set as champion version {champ.version} ({nums['test_digest']})")
            thr = (_logged(cand, run, M.THRESHOLD), _logged(champ, champ_run, M.THRESHOLD))
            if None in thr and metric not in THRESHOLD_FREE:
                fail.append(f"no logged threshold for {'candidate' if thr[0] is None else 'champion'}: "
                            f"{metric} cannot be recomputed")
            else:
                paired, error = _paired(c, cand, champ, metric, [t if t is not None else 0.5 for t in thr],
                                        confidence)
                nums.update(paired)
                if error:
                    fail.append(error)
                else:
                    won = paired["ci_low"] > 0 if higher else paired["ci_high"] < 0
                    p = paired["p_value"]
                    text = (f"{metric} change {paired['delta']:+.4f} vs champion, {confidence:.0%} CI "
                            f"[{paired['ci_low']:+.4f}, {paired['ci_high']:+.4f}], "
                            f"p{'<' if p * PAIRED_RESAMPLES < 1 else '='}{max(p, 1 / PAIRED_RESAMPLES):.4f} "
                            f"over {paired['n_images']} paired images ({paired['n_patients']} patients)")
                    if not higher:
                        text += " (lower is better)"
                    if won:
                        ok.append(f"{text}: improvement shown")
                    else:
                        fail.append(f"{text}: no improvement shown (the CI must exclude 0; a tie is not a win)")

    forced = bool(fail) and force
    promoted = not fail or forced
    reasons = [f"FAIL: {r}" for r in fail] + [f"pass: {r}" for r in ok] + skipped
    if forced:
        reasons.append(f"forced past the failed gates: {reason.strip()}")
    decision = Decision(promoted, str(cand.version), str(champ.version) if promoted and champ else None, reasons,
                        {k: v for k, v in nums.items() if v is not None}, alias, dry_run, forced)
    if not dry_run:
        _record(c, cand, decision, reason.strip() if forced else None)
        if promoted:
            if champ is not None:
                c.set_registered_model_alias(M.MODEL_NAME, previous_alias(alias), champ.version)
            c.set_registered_model_alias(M.MODEL_NAME, alias, cand.version)
    return decision


def _record(c, mv, d: Decision, forced_reason: str | None) -> None:
    tags = {f"{TAG_PREFIX}{k}": _show(v) for k, v in d.numbers.items()}
    tags.update({
        f"{TAG_PREFIX}decision": "promoted" if d.promoted else "refused",
        f"{TAG_PREFIX}alias": d.alias,
        f"{TAG_PREFIX}reason": "; ".join(d.reasons)[:TAG_MAX],
        f"{TAG_PREFIX}at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    if forced_reason:
        tags[f"{TAG_PREFIX}forced_reason"] = forced_reason[:TAG_MAX]
    for key in (mv.tags or {}):  # drop numbers a previous decision left that this one lacks
        if key.startswith(TAG_PREFIX) and key not in tags:
            c.delete_model_version_tag(M.MODEL_NAME, mv.version, key)
    for key, value in tags.items():
        c.set_model_version_tag(M.MODEL_NAME, mv.version, key, value)
    from pneumo import card

    card.append(c, mv.version, card.decision_entry(d, forced_reason))  # the tags hold the latest; the card, each


def rollback(alias: str = M.CHAMPION, client=None, *, dry_run: bool = False) -> Decision:
    """Give `alias` back to the version holding previous_alias(alias); the displaced one becomes previous."""
    c = client or _connect()
    prev_alias = previous_alias(alias)
    prev, cur = _by_alias(c, prev_alias), _by_alias(c, alias)
    if prev is None:
        raise LookupError(f"no version of {M.MODEL_NAME} holds alias '{prev_alias}': nothing to roll back to")
    if cur is not None and str(cur.version) == str(prev.version):
        return Decision(False, str(prev.version), None, [f"version {prev.version} holds both aliases"], alias=alias,
                        dry_run=dry_run, noop=True)
    reasons = [f"rollback: version {prev.version} takes '{alias}' back"
               + (f" from version {cur.version}, which becomes '{prev_alias}'" if cur else "")]
    if not dry_run:
        c.set_registered_model_alias(M.MODEL_NAME, alias, prev.version)
        if cur is not None:
            c.set_registered_model_alias(M.MODEL_NAME, prev_alias, cur.version)
        else:
            c.delete_registered_model_alias(M.MODEL_NAME, prev_alias)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        c.set_model_version_tag(M.MODEL_NAME, prev.version, "rollback.restored_at", now)
        from pneumo import card

        card.append(c, prev.version, card.rollback_entry(alias, True, cur.version if cur else None))
        if cur is not None:
            c.set_model_version_tag(M.MODEL_NAME, cur.version, "rollback.displaced_at", now)
            card.append(c, cur.version, card.rollback_entry(alias, False, prev.version))
    return Decision(True, str(prev.version), str(cur.version) if cur else None, reasons, alias=alias, dry_run=dry_run,
                    rollback=True)


def _show(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _connect():
    from pneumo.tracking import connect

    return connect()
