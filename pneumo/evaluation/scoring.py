"""How a model is scored, the one path for the job's model and for each seed repeat: predict the
validation split, choose the threshold there, then predict the test split once and measure it."""

from __future__ import annotations

from dataclasses import dataclass

from pneumo.evaluation import referral, renderings, stats, subgroups
from pneumo.evaluation.ood_fit import GuardFit
from pneumo.record import names


@dataclass(frozen=True)
class Validated:
    """A model's numbers on the validation split, before the test split is touched."""

    p_val: object  # validation probabilities
    threshold: float  # chosen on validation
    metrics: dict[str, float]  # MODEL_VAL_AUC, MODEL_VAL_AUC_SHIFTED, THRESHOLD (NaN where undefined)


@dataclass(frozen=True)
class Scored:
    p_val: object  # validation probabilities
    p_test: object  # test probabilities
    threshold: float  # chosen on validation
    metrics: dict[str, float]  # MODEL_VAL_AUC(_SHIFTED), THRESHOLD and the test metrics (with CIs when bootstrapped); finite only
    band: tuple[float, float] | None = None  # evaluation.refer: the referral band, chosen on validation


@dataclass(frozen=True)
class Evaluated:
    """A job's model scored once on test (at the threshold chosen on validation), with its guard."""

    scored: Scored
    guard: GuardFit

    @property
    def threshold(self) -> float:
        return self.scored.threshold

    @property
    def metrics(self) -> dict[str, float]:
        """Everything the job logs of its model: validation, threshold, test (with CIs), the guard's flagged shares."""
        return {**self.scored.metrics, **self.guard.flagged}

    @property
    def no_guard(self) -> str | None:
        return self.guard.missing


def validate(model, splits, evaluation, batch_size: int) -> Validated:
    """Predict the validation split and choose the threshold there."""
    p_val = model.predict(splits.val.x, batch_size=batch_size, verbose=0).reshape(-1)
    threshold = stats.choose_threshold(splits.val.y, p_val, evaluation.threshold, evaluation.target_sensitivity)
    # The registered model's own validation AUC (an ensemble's too), under a name of its own: the
    # objective's name holds the best trial's Keras score, the number the job returns to Hydra.
    return Validated(p_val, float(threshold), {
        names.MODEL_VAL_AUC: stats.auc(splits.val.y, p_val), names.THRESHOLD: float(threshold),
        names.MODEL_VAL_AUC_SHIFTED: shifted_val_auc(model, splits, batch_size)})


def on_test(model, splits, evaluation, batch_size: int, validated: Validated, *, bootstrap: bool = True) -> Scored:
    """Predict the test split once, at the threshold chosen on validation, and measure it."""
    p_val, threshold = validated.p_val, validated.threshold
    p_test = model.predict(splits.test.x, batch_size=batch_size, verbose=0).reshape(-1)
    if bootstrap:
        test = stats.evaluate(splits.test.y, p_test, splits.test.patients, threshold, bootstrap=evaluation.bootstrap,
                              confidence=evaluation.confidence, seed=evaluation.seed)
    else:
        test = stats.score(splits.test.y, p_test, threshold)
    # Per pneumonia subtype where the file names carry it (Kermany's bacteria / virus).
    test.update(subgroups.subtype_metrics(splits.test.y, p_test, splits.test.patients, splits.test.paths, threshold,
                                          bootstrap=evaluation.bootstrap if bootstrap else 0,
                                          confidence=evaluation.confidence, seed=evaluation.seed))
    band = None
    if getattr(evaluation, "refer", None) is not None:  # the band is chosen on validation; test only reports it
        band = referral.choose_band(splits.val.y, p_val, threshold, float(evaluation.refer))
        test.update(referral.decided_metrics(splits.test.y, p_test, threshold, band))
    metrics = {k: v for k, v in {**validated.metrics, **test}.items() if names.finite(v) is not None}
    return Scored(p_val, p_test, float(threshold), metrics, band)


def score_model(model, splits, evaluation, batch_size: int, *, bootstrap: bool = True) -> Scored:
    """Threshold on validation, then test once (the job runs the two as phases of their own)."""
    return on_test(model, splits, evaluation, batch_size, validate(model, splits, evaluation, batch_size),
                bootstrap=bootstrap)


def shifted_val_auc(model, splits, batch_size: int) -> float:
    """The model's worst validation AUC over the fixed re-renderings of its validation films: what a
    screen ranks on beside the plain validation AUC (a model's val_auc saturates near 1 on these films)."""
    films = renderings.Renderings.of(splits.val.x, splits.train.x)
    return films.worst_auc(lambda x: model.predict(x, batch_size=batch_size, verbose=0), splits.val.y)
