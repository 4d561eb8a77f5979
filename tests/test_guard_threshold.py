"""The trial guard at its margin: a best val_auc whose z-standard-error lower bound clears 0.5 passes,
one a hair below that fails (pneumo.search.guard.TrialGuard, Hanley & McNeil's SE).

The guard's rule is `best - z * SE(best) > 0.5`, with SE taken at the best AUC itself and from
the validation class counts. The AUC where that bound is exactly 0.5 is found here by
bisection; the guard is then driven through its Keras callback hooks (on_train_begin,
on_epoch_end with the logs Keras hands it, on_train_end) just above and just below it. No
training: the hooks are the guard's whole interface, and a fit could not land an AUC this close.
"""

from __future__ import annotations

import pytest

from pneumo.evaluation.stats import auc_standard_error
from pneumo.record import names
from pneumo.search.guard import DegenerateModel, TrialGuard

EPS = 1e-6  # how far from the margin: far below any SE here (~0.03-0.1), far above float error


def margin(z: float, n_pos: int, n_neg: int) -> float:
    """The AUC a where a - z * SE(a) = 0.5: the guard's pass mark (a - z SE(a) rises with a on [0.5, 1])."""
    low, high = 0.5, 1.0
    for _ in range(200):
        mid = (low + high) / 2
        if mid - z * auc_standard_error(mid, n_pos, n_neg) > 0.5:
            high = mid
        else:
            low = mid
    return high


def train(guard: TrialGuard, val_aucs: list[float]) -> None:
    """What Keras calls on the guard during a fit whose epochs ended with these validation AUCs."""
    guard.on_train_begin()
    for epoch, auc in enumerate(val_aucs):
        guard.on_epoch_end(epoch, {names.LOSS: 0.6, names.VAL_LOSS: 0.65, names.VAL_AUC: auc})
    guard.on_train_end()


# The trainer's default z (1.645: one-sided 95%) on a toy-sized and a demo-sized validation split,
# unequal class counts (the SE is not symmetric in them), and a stricter z.
@pytest.mark.parametrize("z, n_pos, n_neg", [(1.645, 38, 26), (1.645, 300, 110), (2.576, 12, 30)])
def test_just_above_the_margin_passes_and_just_below_fails(z, n_pos, n_neg):
    a = margin(z, n_pos, n_neg)
    se = auc_standard_error(a, n_pos, n_neg)
    assert 0.5 < a < 1 and a == pytest.approx(0.5 + z * se, abs=1e-9)  # the margin is 0.5 + z SE, SE at that AUC
    train(TrialGuard(n_pos, n_neg, z), [0.5, a + EPS])  # passes: no exception
    with pytest.raises(DegenerateModel, match="no better than chance") as err:
        train(TrialGuard(n_pos, n_neg, z), [0.5, a - EPS])
    assert f"on {n_pos} PNEUMONIA + {n_neg} NORMAL validation images" in str(err.value)
    assert f"{z:g} x SE" in str(err.value)


def test_the_best_epoch_counts_not_the_last():
    z, n_pos, n_neg = 1.645, 38, 26
    a = margin(z, n_pos, n_neg)
    train(TrialGuard(n_pos, n_neg, z), [0.55, a + EPS, 0.52])  # later epochs fell back: the best one passes
    with pytest.raises(DegenerateModel):
        train(TrialGuard(n_pos, n_neg, z), [a - EPS, 0.52, 0.51])


def test_each_fit_starts_afresh():
    """Keras Tuner reuses a callback across a trial's retries: a previous fit's best must not carry over."""
    z, n_pos, n_neg = 1.645, 38, 26
    guard = TrialGuard(n_pos, n_neg, z)
    train(guard, [margin(z, n_pos, n_neg) + 0.1])
    with pytest.raises(DegenerateModel):
        train(guard, [0.5])
