"""The card's sections on when not to trust the model (issue 19): sensitivity per pneumonia subtype,
the referral band, the out-of-distribution guard, and the History entry of a `pneumo shift` check."""

from __future__ import annotations

from pneumo.data.subtypes import SUBTYPES
from pneumo.evaluation import format
from pneumo.record import names


def subtype_lines(results: dict, counts: dict | None = None) -> list[str]:
    """A table of sensitivity per subtype, or nothing when the film names carry no subtype."""
    found = [s for s in SUBTYPES if names.finite(results.get(names.subtype_metric(names.TEST_SENSITIVITY, s))) is not None]
    if not found:
        return []
    lines = ["| subtype | sensitivity | CI | PNEUMONIA films |", "|---|---:|---|---:|"]
    for s in found:
        value = format.metric(results, names.subtype_metric(names.TEST_SENSITIVITY, s), sep=" | ", missing="n/a")
        value += "" if " | " in value else " | "
        lines.append(f"| {s} | {value} | {(counts or {}).get(s, '')} |")
    return ["Sensitivity by pneumonia subtype (from the file names; specificity is the NORMAL films'):", "",
            *lines, ""]


def guard_lines(results: dict, band, no_guard: str | None = None) -> list[str]:
    """What the served model answers instead of a forced label (`no_guard`: why it has no guard)."""
    out = ["## When it does not answer", ""]
    flagged = names.finite(results.get(names.VAL_OOD_FLAGGED))
    if no_guard is not None:
        out.append(f"- **no out-of-distribution guard**: the job could not fit it ({no_guard}), so every decodable "
                   "file gets a label, however foreign; `pneumo promote` refuses this version unless forced")
    elif flagged is None:
        out.append("- no out-of-distribution guard: every decodable file gets a label")
    else:
        out.append(f"- out-of-distribution guard: a film far from the training films (image checks on the raw file, "
                   f"and distance in the model's own embedding), or turned upside down or mirrored, is labelled "
                   f"`{names.LABEL_OOD}`; thresholds fixed on validation, flagging {flagged:.1%} of validation and "
                   f"{_share(results.get(names.TEST_OOD_FLAGGED))} of test films")
    if band is None:
        out.append("- no referral band (`evaluation.refer` null): every film in distribution gets NORMAL or PNEUMONIA")
    else:
        out.append(f"- referral: probabilities in ({band[0]:.4f}, {band[1]:.4f}) answer `{names.LABEL_REFER}` "
                   f"(band chosen on validation); on test it decided "
                   f"{_share(results.get(names.TEST_COVERAGE))} of films at accuracy "
                   f"{format.number(results.get(names.TEST_DECIDED_ACCURACY))} (sensitivity "
                   f"{format.number(results.get(names.TEST_DECIDED_SENSITIVITY))}, specificity "
                   f"{format.number(results.get(names.TEST_DECIDED_SPECIFICITY))}), against accuracy "
                   f"{format.number(results.get(names.TEST_ACCURACY))} deciding all")
    return [*out, ""]


def _share(value) -> str:
    v = names.finite(value)
    return format.MISSING if v is None else f"{v:.1%}"


def shift_entry(r, now: str) -> str:
    """A `pneumo shift` check (pneumo.release.shift.ShiftReport) as a History entry."""
    m = r.metrics
    lines = [f"### {now}: shift check on `{r.folder}`", "",
             f"**{r.shift.verdict}**: domain-classifier AUC {format.metric(m, names.SHIFT_AUC)} "
             f"({r.shift.images} films against {r.shift.reference} validation films); run `{r.run_id}`", "",
             f"- flagged out-of-distribution: {format.number(m[names.SHIFT_OOD_FLAGGED])}; predicted PNEUMONIA "
             f"{format.number(m[names.SHIFT_PREVALENCE])} (validation {format.number(m[names.TRAIN_PREVALENCE])})"]
    lines += [f"- {d}" for d in r.shift.differs[:4]]
    return "\n".join(lines)
