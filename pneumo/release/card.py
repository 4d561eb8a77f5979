"""A model card per registered version: what it was trained on, how it scored, what it is for.

Written at registration twice: as the job run's `model_card.md` artifact and as the
version's description in the registry (the MLflow UI renders it as Markdown on the
version's page). Later events are appended to the description only: each
`pneumo promote` decision about the version (its gates and reason), each rollback
that touches it, and each `pneumo evaluate` on an external folder. The artifact stays
as written at registration: it is part of the job's record (beside the model, the
config and the evaluation), which nothing rewrites after the job; the description is
the version's living page. MLflow keeps 5,000 characters of a description: when the
history outgrows that, its oldest entries give way (the `promotion.*` tags and the
evaluation runs still hold them).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from pneumo.evaluation import format
from pneumo.record import names
from pneumo.record.redact import scrub_text

MAX_CHARS = 5000  # MLflow's model-version description column (String(5000))
HISTORY = "## History"
KEPT_SECTIONS = 6  # the title and Intended use, Data, Training, Threshold, Test metrics: never cut for History
REST = f"_(the rest of this card: the job run's `{names.CARD_ARTIFACT}`)_"
THRESHOLD_POLICY = {
    "sensitivity": "the highest threshold whose validation sensitivity is at least {target} (policy `sensitivity`)",
    "youden": "the validation threshold maximising sensitivity + specificity - 1 (policy `youden`)",
}
INTENDED_USE = (
    "A **screening aid** for frontal chest X-rays of **children** (the training films are of patients aged one "
    "to five): it puts films with likely pneumonia first in a radiologist's reading list. **Not a diagnosis**: "
    "every film is still read by a clinician, and a NORMAL call does not rule pneumonia out. Not for adults, "
    "lateral views, CT, or findings other than pneumonia.")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _source(data_cfg, root: str) -> str:
    if data_cfg.source == "synthetic":
        return (f"pneumo's synthetic stand-in ({data_cfg.n_images} generated films, {data_cfg.image_px} px, "
                f"seed {data_cfg.seed}): **not real radiographs**")
    if data_cfg.source == "kaggle":
        return f"Kaggle `{data_cfg.dataset}` (Kermany et al.), at `{root}`"
    return f"the folder `{root}`"


def _counts(splits) -> list[str]:
    rows = ["| split | NORMAL | PNEUMONIA | patients |", "|---|---:|---:|---:|"]
    for name in ("train", "val", "test"):
        s = getattr(splits, name)
        rows.append(f"| {name} | {int((s.y == 0).sum())} | {int((s.y == 1).sum())} | {len(set(s.patients))} |")
    return rows


def _disjoint(splits) -> str:
    """Recounted here, not taken on trust: patients and file contents shared between splits."""
    subsets = ("train", "val", "test")
    shared_p = shared_h = 0
    for i, a in enumerate(subsets):
        for b in subsets[i + 1:]:
            sa, sb = getattr(splits, a), getattr(splits, b)
            shared_p += len(set(sa.patients) & set(sb.patients))
            shared_h += len(set(sa.hashes) & set(sb.hashes))
    if shared_p == shared_h == 0:
        return "yes: no patient and no file (by content hash) is in two splits"
    return f"**NO**: {shared_p} patient(s) and {shared_h} file(s) are shared between splits"


def _config_lines(cfg) -> list[str]:
    """Each group's target and fixed values; the searched ones are under best hyperparameters (all are run params)."""
    from omegaconf import OmegaConf

    from pneumo.config.space import is_space
    from pneumo.record.params import flatten

    out = []
    for group in ("model", "optimizer", "augmentation", "tuner", "trainer"):
        node = OmegaConf.to_container(cfg[group], resolve=True)
        target = node.pop("_target_", None)
        fixed = flatten({k: v for k, v in node.items() if v is not None and not is_space(v)})
        searched = [k for k, v in node.items() if is_space(v)]
        text = ", ".join(f"{k}={v}" for k, v in fixed.items() if v not in ("null", "false", "0.0"))
        out.append(f"- {group}: " + "; ".join(x for x in (f"`{target}`" if target else "", text and f"`{text}`",
                                                          searched and "searched: " + ", ".join(searched)) if x))
    return out


def render(cfg, splits, found, evaluated, registered) -> str:
    """The card of a version, from what its job knows when it registers it: its search's best trials (`found`:
    a pneumo.search.session.SearchResult), their model's numbers (`evaluated`: a
    pneumo.evaluation.scoring.Evaluated) and the version (`registered`: a pneumo.release.registry.Registered,
    whose no_guard says why it has no out-of-distribution guard)."""
    ev, best, top = cfg.evaluation, found.best, found.top
    threshold, results = evaluated.threshold, evaluated.metrics
    version, run_id, no_guard = registered.version, registered.run_id, registered.no_guard
    external = bool(cfg.data.test_root)
    policy = THRESHOLD_POLICY.get(ev.threshold, f"policy `{ev.threshold}`").format(target=ev.target_sensitivity)
    lines = [
        f"# {names.MODEL_NAME} version {version}", "",
        f"Registered {_now()} from job run `{run_id}` (experiment `{cfg.experiment}`): the run holds the "
        f"config, the evaluation plots, the heatmaps and error gallery, and this card as `{names.CARD_ARTIFACT}`.", "",
        "## Intended use", "", INTENDED_USE, "",
        "## Data", "",
        f"- source: {_source(cfg.data, splits.root)}",
        f"- data digest `{splits.digest[:16]}`, test digest `{splits.test_digest[:16]}`",
        f"- test split: {'**external** folder' if external else 'internal'}: `{splits.test_source}`",
        f"- patient-disjoint: {_disjoint(splits)}", "",
        *_counts(splits), "",
        "## Training", "",
        *_config_lines(cfg),
        f"- best trial `{best.trial_id}`" + (f"; the model averages trials {', '.join(t.trial_id for t in top)}"
                                            if len(top) > 1 else ""),
        "- best hyperparameters: " + ", ".join(f"`{k}={format.value(v)}`" for k, v in best.hyperparameters.values.items()),
        "",
        "## Threshold", "",
        f"{threshold:.4f}: {policy}. Chosen on validation; the test split was used once, after.", "",
        f"## Test metrics ({'external' if external else 'internal'} test split, {len(splits.test)} films, "
        f"{len(set(splits.test.patients))} patients)", "",
        f"| metric | value | {ev.confidence:.0%} CI (patient bootstrap) |", "|---|---:|---|",
    ]
    for name in names.TEST_METRICS:
        lines.append(f"| {name} | {format.metric(results, name, sep=' | ', missing='n/a')} |")
    from pneumo.evaluation.subgroups import subtype_counts
    from pneumo.release import trust_card

    lines += ["", *trust_card.subtype_lines(results, dict(subtype_counts(splits.test.y, splits.test.paths))),
              *trust_card.guard_lines(results, _band(results), no_guard),
              "External evaluations (`pneumo evaluate`) and shift checks (`pneumo shift`) are added under History.", "",
              "## Known limits", "", *limits(cfg.data, splits, external)]
    return "\n".join(lines) + "\n"


def _band(results: dict):
    low, high = names.finite(results.get(names.REFER_LOW)), names.finite(results.get(names.REFER_HIGH))
    return None if low is None or high is None else (low, high)


def limits(data_cfg, splits, external: bool) -> list[str]:
    out = []
    if data_cfg.source == "synthetic":
        out.append("- **Synthetic data**: trained and tested on generated films; these numbers say nothing about "
                   "real radiographs.")
    out += [
        "- Single centre: Kermany et al.'s films all come from one hospital (Guangzhou Women and Children's "
        "Medical Center); other scanners and populations are untested unless an external evaluation says otherwise.",
        "- Pediatric only: patients aged one to five; never validated on adults.",
        "- Train/test shift: Kermany's own test films were taken later than its training films and score lower; "
        + ("this job was tested on an external folder." if external else
           "this job's test split shares their origin, so it likely overstates performance on new films."),
        "- Labels are image-level NORMAL/PNEUMONIA; bacterial and viral pneumonia are one class to the model "
        "(sensitivity per subtype is reported where the file names say which; viral is the harder one).",
        f"- {len(splits.test)} test films: read the CIs, not the point estimates.",
    ]
    return out


def record(job, version, text: str) -> None:
    """The card at registration: the job run's artifact (`job`: its pneumo.record.jobs.JobRecord) and the
    version's description."""
    text = scrub_text(text)  # a credential in a config value (data.dataset may name the Kaggle user) stays out
    job.log_text(text, names.CARD_ARTIFACT)
    job.store.describe(version, _fit(text, []))


def append(store, version, entry: str) -> None:
    """Add an entry (a `### ...` block) to the version's History, oldest entries giving way past MAX_CHARS."""
    entry = scrub_text(entry)
    text = store.version(version).description
    found = re.search(rf"(?m)^{HISTORY}$", text)
    head, history = (text[:found.start()], text[found.end():]) if found else (text, "")
    entries = [e.strip() for e in re.split(r"(?m)^(?=### )", history) if e.strip().startswith("### ")]
    dropped = sum(int(n) for n in re.findall(r"_\((\d+) earlier entr", history))
    store.describe(version, _fit(head.rstrip() + "\n", [*entries, entry.strip()], dropped))


def _fit(head: str, entries: list[str], dropped: int = 0) -> str:
    def compose():
        if not entries and not dropped:
            return head
        note = [f"_({dropped} earlier entries dropped: MLflow keeps {MAX_CHARS} characters)_"] if dropped else []
        top = [head.rstrip(), ""] if head.strip() else []
        return "\n".join([*top, HISTORY, "", *note, *(e + "\n" for e in entries)]).rstrip() + "\n"

    text = compose()
    # Past MLflow's limit the card's last sections give way to History first (the job run's model_card.md
    # keeps the whole card); the card down to its test metrics always stays.
    sections = re.split(r"(?m)^(?=## )", head.replace(REST, "").rstrip() + "\n")
    while len(text) > MAX_CHARS and len(sections) > KEPT_SECTIONS:
        sections.pop()
        head = "".join(sections).rstrip() + "\n\n" + REST + "\n"
        text = compose()
    while len(text) > MAX_CHARS and len(entries) > 1:
        entries.pop(0)
        dropped += 1
        text = compose()
    return text[:MAX_CHARS]


def shift_entry(r) -> str:
    """A `pneumo shift` check as a History entry."""
    from pneumo.release import trust_card

    return trust_card.shift_entry(r, _now())


def decision_entry(d, forced_reason: str | None = None) -> str:
    """A promote decision (registry.Decision) as a History entry: the verdict, then every gate."""
    verdict = ("promoted" if d.promoted else "refused") + (" (forced)" if d.forced else "")
    lines = [f"### {_now()}: {verdict} for `{d.alias}`", ""]
    lines += [f"- {r}" for r in d.reasons if not r.startswith("skipped:")]  # skipped ones are other versions
    if d.previous and not d.dry_run:
        from pneumo.release.registry import previous_alias

        lines.append(f"- version {d.previous} became `{previous_alias(d.alias)}`")
    if forced_reason:
        lines.append(f"- reason given: {forced_reason}")
    return "\n".join(lines)


def rollback_entry(alias: str, restored: bool, other) -> str:
    what = (f"takes `{alias}` back" + (f" from version {other}" if other else "") if restored
            else f"gives `{alias}` back to version {other} (rollback)")
    return f"### {_now()}: rollback\n\n- this version {what}"


def external_entry(r) -> str:
    """A `pneumo evaluate` result (pneumo.release.score.External) as a History entry."""
    lines = [f"### {_now()}: external evaluation on `{r.folder}`", "",
             f"{r.images} films, threshold {r.threshold:.4f} (the job's); run `{r.run_id}`", "",
             "| metric | value | CI |", "|---|---:|---|"]
    from pneumo.data.subtypes import SUBTYPES

    subtypes = [names.subtype_metric(names.TEST_SENSITIVITY, s) for s in SUBTYPES]
    for name in (names.TEST_AUC, names.TEST_SENSITIVITY, *subtypes, names.TEST_SPECIFICITY, names.TEST_AUPRC, names.TEST_BRIER):
        if name not in subtypes or names.finite(r.metrics.get(name)) is not None:
            lines.append(f"| {name} | {format.metric(r.metrics, name, sep=' | ', missing='n/a')} |")
    return "\n".join(lines)
