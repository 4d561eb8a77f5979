"""The chance guard and the image checks pinned at their lines (issue 27).

The chance guard (pneumo.search.guard.TrialGuard) fails a trial whose best val AUC minus z
standard errors is at or below 0.5; z is trainer.chance_z, 1.645 in conf/. The image checks
(pneumo.evaluation.imagestats) feed the OOD guard: each is measured here on a film drawn in
flat regions, where every number is known.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pneumo.evaluation import imagestats
from pneumo.evaluation.stats import auc_standard_error
from pneumo.record import names
from pneumo.search.guard import DegenerateModel, TrialGuard


def above(x: float) -> float:
    return float(np.nextafter(x, np.inf))


def fit(guard: TrialGuard, val_aucs, losses=(0.6, 0.65)) -> None:
    """What Keras calls on the guard during a fit whose epochs ended with these validation AUCs."""
    guard.on_train_begin()
    for epoch, auc in enumerate(val_aucs):
        guard.on_epoch_end(epoch, {names.LOSS: losses[0], names.VAL_LOSS: losses[1], names.VAL_AUC: auc})
    guard.on_train_end()


def test_chance_z_is_1_645_in_conf_and_reaches_the_guard():
    from hydra import compose, initialize_config_dir

    from pneumo.config import paths, schema
    from pneumo.search.fit import keras_callbacks

    schema.register()
    with initialize_config_dir(str(paths.CONF_DIR), version_base="1.3"):
        cfg = compose("config")
    assert cfg.trainer.chance_z == 1.645
    y_val = np.array([1] * 30 + [0] * 12)
    (guard,) = [cb for cb in keras_callbacks(cfg.trainer, y_val) if isinstance(cb, TrialGuard)]
    assert (guard.z, guard.n_pos, guard.n_neg) == (1.645, 30, 12)


def test_the_guard_fails_a_lower_bound_at_one_half_and_passes_one_just_above():
    """z = 0 makes the bound the AUC itself: 0.5 fails (a coin), the next number up passes."""
    with pytest.raises(DegenerateModel, match="no better than chance"):
        fit(TrialGuard(30, 12, 0.0), [0.5])
    fit(TrialGuard(30, 12, 0.0), [above(0.5)])
    fit(TrialGuard(30, 12, 0.0), [0.9, 0.5])  # the best epoch counts, not the last


def test_the_default_z_at_its_margin():
    """AUC 0.5 + 1.645 SE, SE at that AUC (30 + 12 films): a hair above passes, a hair below fails."""
    low, high = 0.5, 1.0
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (low, mid) if mid - 1.645 * auc_standard_error(mid, 30, 12) > 0.5 else (mid, high)
    fit(TrialGuard(30, 12, 1.645), [high + 1e-9])
    with pytest.raises(DegenerateModel):
        fit(TrialGuard(30, 12, 1.645), [high - 1e-9])
    fit(TrialGuard(30, 12, 1.0), [high - 1e-9])  # a smaller z passes it: the margin scales with z


def test_no_chance_check_without_z_or_without_both_classes():
    for guard in (TrialGuard(30, 12, None), TrialGuard(0, 12, 1.645), TrialGuard(30, 0, 1.645)):
        fit(guard, [0.5])


@pytest.mark.parametrize("loss, val_loss", [(float("nan"), 0.6), (0.6, float("inf")), (float("-inf"), 0.6)])
def test_a_non_finite_loss_fails_the_trial(loss, val_loss):
    with pytest.raises(FloatingPointError, match="diverged"):
        fit(TrialGuard(30, 12, None), [0.9], losses=(loss, val_loss))
    fit(TrialGuard(30, 12, None), [0.9], losses=(1e30, 1e30))  # large is not diverged


def test_a_failed_trials_reason_names_the_loss_the_epoch_as_counted_from_one_and_what_to_change():
    """The reason is what Keras Tuner records on the FAILED trial: the user reads it to know what to change."""
    with pytest.raises(FloatingPointError) as diverged:
        fit(TrialGuard(30, 12, None), [0.9, 0.9], losses=(0.5, float("nan")))
    assert str(diverged.value) == "val_loss became nan in epoch 1: the trial diverged (learning rate too high?)"
    guard = TrialGuard(30, 12, None)
    guard.on_train_begin()
    with pytest.raises(FloatingPointError, match=r"^loss became inf in epoch 3: .*\(learning rate too high\?\)$"):
        guard.on_epoch_end(2, {names.LOSS: float("inf")})
    with pytest.raises(DegenerateModel) as chance:
        fit(TrialGuard(30, 12, 0.0), [0.5])
    assert str(chance.value).endswith("on 30 PNEUMONIA + 12 NORMAL validation images (constant or near-constant "
                                      "predictions; trainer.chance_z sets the margin)")


def test_a_nan_val_auc_is_no_best():
    with pytest.raises(DegenerateModel):
        fit(TrialGuard(30, 12, 0.0), [0.5, float("nan")])
    fit(TrialGuard(30, 12, 0.0), [float("nan"), 0.9])


# -- image checks ---------------------------------------------------------------------------------


def png(a: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(a, np.uint8), mode).save(buf, "PNG")
    return buf.getvalue()


def feats(data: bytes) -> dict[str, float]:
    return dict(zip(imagestats.FEATURES, imagestats.features(data)))


def flat(v) -> np.ndarray:
    return np.full((64, 64), v)


def test_dark_and_burnt_out_shares_start_below_10_and_above_245():
    assert feats(png(flat(9)))["dark"] == 1.0 and feats(png(flat(10)))["dark"] == 0.0
    assert feats(png(flat(246)))["bright"] == 1.0 and feats(png(flat(245)))["bright"] == 0.0


def test_exposure_contrast_and_colour():
    f = feats(png(flat(102)))
    assert f["mean"] == pytest.approx(102 / 255) and f["std"] == pytest.approx(0, abs=1e-12) and f["saturation"] == 0
    half = np.r_[np.zeros((32, 64)), np.full((32, 64), 255)]
    assert feats(png(half))["std"] == pytest.approx(0.5)
    colour = np.zeros((64, 64, 3))
    colour[...] = (200, 100, 50)
    assert feats(png(colour, "RGB"))["saturation"] == pytest.approx(150 / 255)
    colour[...] = (90, 90, 90)
    assert feats(png(colour, "RGB"))["saturation"] == 0  # a gray picture saved in colour is still gray


def test_entropy_is_in_units_of_its_32_bins():
    assert feats(png(flat(100)))["entropy"] == 0
    every_bin = np.repeat(np.arange(32) * 8 + 4, 128).reshape(64, 64)
    assert feats(png(every_bin))["entropy"] == pytest.approx(1.0)
    assert feats(png(np.r_[np.zeros((32, 64)), np.full((32, 64), 255)]))["entropy"] == pytest.approx(0.2)


def layout(middle=200, sides=60, rest=120, top=30, bottom=220) -> np.ndarray:
    """A film in flat regions: above the lungs `top`, below `bottom`; across the lung height (rows 16-47)
    the mediastinum (columns 28-35) `middle`, the lungs (8-23, 40-55) `sides`, the rest `rest`."""
    a = np.full((64, 64), rest)
    a[:16], a[48:] = top, bottom
    a[16:48, 28:36] = middle
    a[16:48, 8:24] = a[16:48, 40:56] = sides
    return a


def test_the_mediastinum_is_the_middle_band_minus_the_lungs_at_lung_height():
    a = layout()
    f = feats(png(a))
    assert f["mediastinum"] == pytest.approx((200 - 60) / 255)
    assert feats(png(255 - a))["mediastinum"] == pytest.approx(-(200 - 60) / 255)  # an inverted film
    turned = feats(png(a.T))
    assert turned["rotated"] == pytest.approx(f["mediastinum"]) and f["rotated"] == pytest.approx(turned["mediastinum"])
    # the bottom rows minus the top ones, about a third of 64 px each: 22 at the bottom (-64 // 3 is -22), 21 at the top
    assert f["top_bottom"] == pytest.approx((a[-22:].mean() - a[:21].mean()) / 255)
    assert f["top_bottom"] > 0 > feats(png(a[::-1]))["top_bottom"]


def test_the_features_are_in_the_order_the_guard_names_them():
    assert imagestats.FEATURES == ("saturation", "mean", "std", "dark", "bright", "entropy", "mediastinum", "rotated",
                                   "top_bottom")
    row = imagestats.features(png(flat(9)))
    (f,), (layout,) = imagestats.split(row[None])  # the named statistics, then the orientation check's layout
    assert len(f) == len(imagestats.FEATURES) and len(layout) == imagestats.LAYOUT ** 2
    assert f[3] == 1.0 and f[1] == pytest.approx(9 / 255)
