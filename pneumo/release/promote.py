"""Promotion and rollback: an alias moves only when every gate passes, and each decision is recorded.

Rollback swaps: the `previous` version takes the alias back and the displaced one becomes
`previous`, so a second rollback undoes the first. It leaves the `promotion.*` tags (the record
of each decision) as they are and tags the restored and the displaced version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from pneumo.evaluation import format
from pneumo.record import names
from pneumo.record.entities import NotFound
from pneumo.release import card
from pneumo.release.gates import (
    MIN_SENSITIVITY,
    MIN_SPECIFICITY,
    PAIRED_RESAMPLES,
    THRESHOLD_FREE,
    best_passing,
    capped,
    own_gates,
    paired_test,
    subtype_warnings,
)
from pneumo.release.registry import logged, previous_alias, tested_on

TAG_MAX = 5000  # characters; MLflow's limit on a model-version tag value


@dataclass(frozen=True)
class Decision:
    promoted: bool  # the alias moved (or, with dry_run, would move)
    version: str | None
    previous: str | None  # the version displaced from the alias (None: there was none / no move)
    reasons: list[str]
    numbers: dict = field(default_factory=dict)  # each a promotion.<name> tag on the version (names.promotion_tag)
    alias: str = names.CHAMPION
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
        lines += [f"    {k}: {format.value(v)}" for k, v in self.numbers.items() if v is not None]
        return "\n".join(lines)


def promote(metric: str = names.TEST_AUC, version=None, alias: str = names.CHAMPION, *, confidence: float = 0.95,
            min_sensitivity: float = MIN_SENSITIVITY, min_specificity: float = MIN_SPECIFICITY,
            dry_run: bool = False, force: bool = False, reason: str | None = None, store=None) -> Decision:
    """Move `alias` to the best version that can pass by `metric` (or to `version`) if every gate passes,
    in `store` (pneumo.record's Store; default: the one MLFLOW_TRACKING_URI or the local store names)."""
    _check(metric, confidence, min_sensitivity, min_specificity, force, reason)
    c = store or _default_store()
    champ = c.version_by_alias(alias)
    skipped = []
    if version is not None:
        try:
            cand = c.version(version)
        except NotFound as err:
            raise LookupError(f"{names.MODEL_NAME} has no version {version}") from err
    else:
        cand, skipped = best_passing(c, metric, champ, min_sensitivity, min_specificity)
    skipped = [f"skipped: {s}" for s in capped(skipped)]
    if champ is not None and str(cand.version) == str(champ.version):
        held = (f"version {cand.version} is already the best that can pass and holds '{alias}'" if version is None
                else f"version {cand.version} holds '{alias}'")
        return Decision(False, str(cand.version), None, [held, *skipped], alias=alias, dry_run=dry_run, noop=True)

    run = c.find_run(cand.run_id)
    ok, fail, own = own_gates(cand, run, min_sensitivity, min_specificity)
    nums = {"metric": metric, "candidate_value": logged(cand, run, metric), **own,
            "test_digest": tested_on(cand, run)}
    if champ is None:
        ok.append(f"no version holds '{alias}' yet: " + ("the best passing version takes it" if version is None
                                                          else "nothing to compare with"))
    else:
        passed, failed, numbers = _against_champion(c, cand, run, champ, metric, confidence)
        ok, fail, nums = ok + passed, fail + failed, {**nums, **numbers}

    forced = bool(fail) and force
    promoted = not fail or forced
    warned = subtype_warnings(cand, run, min_sensitivity)  # named in the decision, never a refusal (see gates)
    reasons = [f"FAIL: {r}" for r in fail] + [f"WARNING: {r}" for r in warned] + [f"pass: {r}" for r in ok] + skipped
    if forced:
        reasons.append(f"forced past the failed gates: {reason.strip()}")
    decision = Decision(promoted, str(cand.version), str(champ.version) if promoted and champ else None, reasons,
                        {k: v for k, v in nums.items() if v is not None}, alias, dry_run, forced)
    if not dry_run:
        _record(c, cand, decision, reason.strip() if forced else None)
        if promoted:
            if champ is not None:
                c.set_alias(previous_alias(alias), champ.version)
            c.set_alias(alias, cand.version)
    return decision


def _check(metric: str, confidence: float, min_sensitivity: float, min_specificity: float, force: bool,
           reason: str | None) -> None:
    if force and not (reason or "").strip():
        raise ValueError("force=True needs a non-empty reason: it is recorded on the version")
    if metric not in names.TEST_METRICS:
        raise ValueError(f"promotion compares test predictions: metric must be one of {', '.join(names.TEST_METRICS)}")
    for name, floor in (("min_sensitivity", min_sensitivity), ("min_specificity", min_specificity)):
        if not 0 <= floor <= 1:  # also refuses nan
            raise ValueError(f"{name} is a proportion: it must be between 0 and 1, got {floor}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")


def _against_champion(c, cand, run, champ, metric: str, confidence: float) -> tuple[list[str], list[str], dict]:
    """The gates against the champion: the same test set, then a paired bootstrap whose CI excludes 0
    in the metric's direction. (passed, failed, numbers)."""
    ok, fail, champ_run = [], [], c.find_run(champ.run_id)
    nums = {"champion_version": str(champ.version), "champion_value": logged(champ, champ_run, metric),
            "champion_test_digest": tested_on(champ, champ_run)}
    digest = tested_on(cand, run)
    if not digest or digest != nums["champion_test_digest"]:
        fail.append(f"different test set from champion version {champ.version} "
                    f"({digest} vs {nums['champion_test_digest']}): scores are not comparable")
        return ok, fail, nums
    ok.append(f"same test set as champion version {champ.version} ({digest})")
    thr = (logged(cand, run, names.THRESHOLD), logged(champ, champ_run, names.THRESHOLD))
    if None in thr and metric not in THRESHOLD_FREE:
        fail.append(f"no logged threshold for {'candidate' if thr[0] is None else 'champion'}: "
                    f"{metric} cannot be recomputed")
        return ok, fail, nums
    paired, error = paired_test(c, cand, champ, metric, [t if t is not None else 0.5 for t in thr], confidence)
    nums.update(paired)
    if error:
        fail.append(error)
        return ok, fail, nums
    higher = names.higher_is_better(metric)
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
    return ok, fail, nums


def _default_store():
    from pneumo.record import store

    return store.connect()


def _record(c, mv, d: Decision, forced_reason: str | None) -> None:
    tags = {names.promotion_tag(k): format.value(v) for k, v in d.numbers.items()}
    tags.update({
        names.TAG_PROMOTION_DECISION: names.PROMOTED if d.promoted else names.REFUSED,
        names.TAG_PROMOTION_ALIAS: d.alias,
        names.TAG_PROMOTION_REASON: "; ".join(d.reasons)[:TAG_MAX],
        names.TAG_PROMOTION_AT: datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    if forced_reason:
        tags[names.TAG_PROMOTION_FORCED] = forced_reason[:TAG_MAX]
    # drop numbers a previous decision left that this one lacks
    c.delete_version_tags(mv.version, [k for k in mv.tags if k.startswith(names.PROMOTION_PREFIX) and k not in tags])
    c.set_version_tags(mv.version, tags)
    card.append(c, mv.version, card.decision_entry(d, forced_reason))  # the tags hold the latest; the card, each


def rollback(alias: str = names.CHAMPION, store=None, *, dry_run: bool = False) -> Decision:
    """Give `alias` back to the version holding previous_alias(alias); the displaced one becomes previous."""
    c = store or _default_store()
    prev_alias = previous_alias(alias)
    prev, cur = c.version_by_alias(prev_alias), c.version_by_alias(alias)
    if prev is None:
        raise LookupError(f"no version of {names.MODEL_NAME} holds alias '{prev_alias}': nothing to roll back to")
    if cur is not None and str(cur.version) == str(prev.version):
        return Decision(False, str(prev.version), None, [f"version {prev.version} holds both aliases"], alias=alias,
                        dry_run=dry_run, noop=True)
    reasons = [f"rollback: version {prev.version} takes '{alias}' back"
               + (f" from version {cur.version}, which becomes '{prev_alias}'" if cur else "")]
    if not dry_run:
        c.set_alias(alias, prev.version)
        if cur is not None:
            c.set_alias(prev_alias, cur.version)
        else:
            c.delete_alias(prev_alias)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        c.set_version_tags(prev.version, {names.TAG_ROLLBACK_RESTORED: now})
        card.append(c, prev.version, card.rollback_entry(alias, True, cur.version if cur else None))
        if cur is not None:
            c.set_version_tags(cur.version, {names.TAG_ROLLBACK_DISPLACED: now})
            card.append(c, cur.version, card.rollback_entry(alias, False, prev.version))
    return Decision(True, str(prev.version), str(cur.version) if cur else None, reasons, alias=alias, dry_run=dry_run,
                    rollback=True)
