"""The out-of-distribution guard and the shift verdict pinned at their lines (issue 27): each half of
the OOD score (image statistics, embedding) flags on its own, the score's line is 1.0 (flagged only
above it), the shift verdict reads the domain AUC's lower CI bound against 0.5 + 0.05.

No model: the guard's arithmetic is fed features and embeddings chosen here (a guard with unit
precision measures plain Euclidean lengths); the shift verdict gets its AUC numbers chosen here
where the line is at stake, and real ones from real feature sets where the classifier is.
"""

from __future__ import annotations

import numpy as np
import pytest

from pneumo.evaluation import ood, shift
from pneumo.record import names

import toy_model


def above(x: float) -> float:
    return float(np.nextafter(x, np.inf))


def below(x: float) -> float:
    return float(np.nextafter(x, -np.inf))


def unit_guard(threshold=3.0, img_median=1.0, emb_median=1.0, center=(1.0, 1.0), scale=(2.0, 2.0)) -> ood.Guard:
    """Image features (2): z = (x - center) / scale; embedding (3): e = x - (1, 0, 0); identity precisions."""
    return ood.Guard(np.array(center), np.array(scale), np.zeros(2), np.eye(2), np.array([1.0, 0, 0]), np.eye(3),
                     img_median, emb_median, threshold, 0.99, np.zeros((4, 2)), np.zeros((4, 3)), np.zeros(4), 0.5,
                     np.array(["mean", "std"]))


def img_at(d: float) -> list[float]:
    """Image features at distance d from unit_guard's centre (z = (d, 0))."""
    return [1.0 + 2.0 * d, 1.0]


def emb_at(d: float) -> list[float]:
    return [1.0, 0.0, d]


def test_the_score_is_one_at_the_line_and_flags_only_above_it():
    g = unit_guard(threshold=3.0)
    score, flag = g.score(np.array([img_at(3.0), img_at(above(3.0)), img_at(0)]),
                          np.array([emb_at(0), emb_at(0), emb_at(0)]))
    assert score[0] == 1.0 and not flag[0]
    assert score[1] > 1.0 and flag[1]
    assert score[2] == 0.0 and not flag[2]


def test_each_half_of_the_score_flags_on_its_own():
    """A film ordinary in pixels but foreign to the model (embedding far), and the reverse."""
    g = unit_guard(threshold=3.0)
    far, near = above(3.0), 1.0
    score, flag = g.score(np.array([img_at(near), img_at(far), img_at(far)]),
                          np.array([emb_at(far), emb_at(near), emb_at(far)]))
    assert list(flag) == [True, True, True]
    np.testing.assert_allclose(score, [far / 3, far / 3, far / 3])
    score, flag = g.score(np.array([img_at(near), img_at(2.0)]), np.array([emb_at(2.0), emb_at(near)]))
    assert list(flag) == [False, False]
    np.testing.assert_array_equal(score, [2.0 / 3, 2.0 / 3])  # the larger half, not a sum or a mean of the two


def test_each_half_is_in_units_of_its_own_validation_median():
    g = unit_guard(threshold=2.0, img_median=4.0, emb_median=0.5)
    a, b = g.distances(np.array([img_at(4.0), img_at(0)]), np.array([emb_at(0), emb_at(0.5)]))
    np.testing.assert_array_equal(a, [1.0, 0.0])
    np.testing.assert_array_equal(b, [0.0, 1.0])
    score, flag = g.score(np.array([img_at(8.0), img_at(above(8.0)), img_at(0)]),
                          np.array([emb_at(0), emb_at(0), emb_at(above(1.0))]))
    assert list(flag) == [False, True, True] and score[0] == 1.0


def test_a_feature_is_centred_and_scaled_by_the_training_films():
    g = unit_guard(threshold=1.0, center=(10.0, -2.0), scale=(0.5, 4.0))
    a, _ = g.distances(np.array([[10.5, -2.0], [10.0, 2.0], [10.0, -2.0]]), np.zeros((3, 3)) + [1, 0, 0])
    np.testing.assert_array_equal(a, [1.0, 1.0, 0.0])


def _films(rng, n, shift_=0.0):
    return rng.normal(shift_, 1, (n, 4)), rng.normal(shift_, 1, (n, 6))


def test_the_guard_is_fitted_on_training_films_and_scaled_and_thresholded_on_validation():
    rng = np.random.default_rng(0)
    t_img, t_emb = _films(rng, 400)
    v_img, v_emb = _films(rng, 300, shift_=0.7)  # validation unlike training: each role shows
    g = ood.fit(t_img, t_emb, v_img, v_emb, rng.random(300), prob_threshold=0.4, quantile=0.9, reference=1000)
    np.testing.assert_allclose(g.emb_mean, t_emb.mean(0))  # the location of the TRAINING embeddings
    np.testing.assert_allclose(g.img_center, np.median(t_img, 0))
    # the image half is a Gaussian of the TRAINING features once centred and scaled by the training films
    np.testing.assert_allclose(g.img_mean, ((t_img - g.img_center) / g.img_scale).mean(0), atol=1e-12)
    a, b = g.distances(v_img, v_emb)
    assert np.median(a) == pytest.approx(1.0) and np.median(b) == pytest.approx(1.0)  # validation's medians
    score, flag = g.score(v_img, v_emb)
    raw = np.maximum(a, b)
    assert g.threshold == ood.threshold(raw, 0.9) and g.quantile == 0.9
    assert flag.mean() <= 0.1 + 1 / 300  # the quantile of validation: ~10% flagged at most
    assert g.prob_threshold == 0.4


def test_the_threshold_is_the_higher_of_the_empirical_and_the_fitted_quantile():
    from scipy.stats import norm

    def fitted(raw, q):
        logs = np.log(raw)
        return float(np.exp(logs.mean() + norm.ppf(q) * logs.std(ddof=1)))

    rng = np.random.default_rng(1)
    few = np.exp(rng.normal(0, 0.3, 7))  # a toy run's 7 films: the fitted tail is higher
    assert ood.threshold(few, 0.99) == fitted(few, 0.99) > np.quantile(few, 0.99)
    heavy = np.r_[np.ones(500), [50.0] * 20]  # an empirical tail above the log-normal's
    assert ood.threshold(heavy, 0.99) == np.quantile(heavy, 0.99) > fitted(heavy, 0.99)
    two = np.array([1.0, 3.0])  # two films: no tail fitted (it would say 10.5), the empirical quantile alone
    assert ood.threshold(two, 0.99) == np.quantile(two, 0.99) < fitted(two, 0.99)
    three = np.array([1.0, 2.0, 3.0])
    assert ood.threshold(three, 0.99) == max(np.quantile(three, 0.99), fitted(three, 0.99))


def test_tiny_scores_keep_their_own_scale_and_a_threshold_stays_above_zero():
    """Validation films nearer the training centre than one unit: each half is still in units of its own
    validation median (no floor near 1); a two-film threshold is their quantile (no tail fitted, nothing
    added), and all-zero scores get a threshold of 1e-12, not 0 (a score is divided by it)."""
    rng = np.random.default_rng(3)
    t_img, t_emb = _films(rng, 200)
    g = ood.fit(t_img, t_emb, t_img[:50] * 0.02, t_emb[:50] * 0.02 + t_emb.mean(0) * 0.98, rng.random(50),
                prob_threshold=0.5)
    a, b = g.distances(t_img[:50] * 0.02, t_emb[:50] * 0.02 + t_emb.mean(0) * 0.98)
    assert g.img_median < 1 and g.emb_median < 1
    assert np.median(a) == pytest.approx(1.0) and np.median(b) == pytest.approx(1.0)
    assert ood.threshold(np.array([0.25, 0.5]), 0.99) == np.quantile([0.25, 0.5], 0.99)
    assert ood.threshold(np.zeros(2), 0.99) == 1e-12


def test_a_feature_scale_is_the_training_mad_floored_at_0_02():
    center, scale = ood._scale(np.array([[0.0, 5.0, 0.0], [0.1, 5.0, 0.01], [0.2, 5.0, 0.02]]))
    np.testing.assert_allclose(center, [0.1, 5.0, 0.01])
    np.testing.assert_allclose(scale, [1.4826 * 0.1, 0.02, 0.02])  # 1.4826 x 0.01 is below the floor
    assert ood.SCALE_FLOOR == 0.02


@pytest.mark.parametrize("n_val, kept", [(50, 50), (51, 50)])
def test_the_shift_reference_is_capped_at_the_sample_size(n_val, kept):
    rng = np.random.default_rng(2)
    t_img, t_emb = _films(rng, 60)
    v_img, v_emb = _films(rng, n_val)
    g = ood.fit(t_img, t_emb, v_img, v_emb, rng.random(n_val), prob_threshold=0.5, reference=50, seed=7)
    assert len(g.ref_img) == len(g.ref_emb) == len(g.ref_prob) == kept
    keep = np.arange(n_val) if kept == n_val else np.sort(np.random.default_rng(7).choice(n_val, kept, replace=False))
    np.testing.assert_array_equal(g.ref_img, v_img[keep])  # a seeded sample (evaluation.seed), no film twice


@pytest.mark.parametrize("n_train, n_val, ok", [(1, 5, False), (5, 1, False), (2, 2, True)])
def test_a_guard_needs_two_training_and_two_validation_films(n_train, n_val, ok):
    """One training film has no spread: its distances were all 0 and the guard flagged nothing."""
    rng = np.random.default_rng(3)
    args = (*_films(rng, n_train), *_films(rng, n_val), rng.random(n_val))
    if ok:
        ood.fit(*args, prob_threshold=0.5)
    else:
        with pytest.raises(ValueError, match="at least 2"):
            ood.fit(*args, prob_threshold=0.5)


def test_a_saved_guard_scores_as_the_fitted_one(tmp_path):
    rng = np.random.default_rng(4)
    g = ood.fit(*_films(rng, 40), *_films(rng, 20), rng.random(20), prob_threshold=0.3, names=("a", "b", "c", "d"))
    g.save(tmp_path / "g.npz")
    back = ood.Guard.load(tmp_path / "g.npz")
    x, e = _films(rng, 10, shift_=2)
    np.testing.assert_array_equal(back.score(x, e)[0], g.score(x, e)[0])
    assert back.prob_threshold == 0.3 and list(back.features) == ["a", "b", "c", "d"]


# -- the shift verdict ---------------------------------------------------------------------------------


def shift_guard(ref_img, ref_prob=None, prob_threshold=0.5, features=("saturation", "mean")):
    n = len(ref_img)
    return ood.Guard(np.zeros(2), np.ones(2), np.zeros(2), np.eye(2), np.zeros(3), np.eye(3), 1.0, 1.0, 1.0, 0.99,
                     np.asarray(ref_img, float), np.random.default_rng(0).normal(0, 1, (n, 3)),
                     np.full(n, 0.1) if ref_prob is None else np.asarray(ref_prob, float), prob_threshold,
                     np.array(features))


def verdict(monkeypatch, auc, low, high, img=None):
    monkeypatch.setattr(shift, "domain_auc", lambda ref, new, **kw: (auc, low, high))
    g = shift_guard(np.c_[np.zeros(20), np.linspace(0, 1, 20)])
    img = np.c_[np.zeros(20), np.linspace(0, 1, 20)] if img is None else img
    return shift.compare(g, img, np.random.default_rng(1).normal(0, 1, (20, 3)), np.full(20, 0.1))


@pytest.mark.parametrize("auc, low, high, shifted", [
    (0.6, 0.55, 0.65, False),  # the bound at 0.5 + 0.05: not shifted
    (0.6, above(0.55), 0.65, True),
    (0.9, below(0.55), 0.99, False),  # a point AUC far above the line is not enough
    (0.55, 0.55, 0.99, False),
])
def test_the_shift_verdict_is_the_lower_bound_above_0_55(monkeypatch, auc, low, high, shifted):
    r = verdict(monkeypatch, auc, low, high)
    assert r.verdict == (shift.SHIFTED if shifted else shift.SAME)
    low_, high_ = names.ci_names(names.SHIFT_AUC)
    assert (r.metrics[names.SHIFT_AUC], r.metrics[low_], r.metrics[high_]) == (auc, low, high)
    # identical image statistics: a shift, when called, is in the model's own features
    said = "no image statistic differs much: the difference is in the model's own features (embedding)"
    assert (said in r.differs) == shifted
    assert shift.MARGIN == 0.05


def test_a_statistic_is_named_from_a_standardised_difference_of_0_5():
    """Reference column values 0 and 2 (sd 1): a folder at mean + 0.5 sd differs, one just under does not;
    exposure (mean) is always shown."""
    ref = np.c_[np.tile([0.0, 2.0], 10), np.tile([0.0, 2.0], 10)]
    g = shift_guard(ref)

    def named(step):
        new = np.c_[np.tile([0.0, 2.0], 10) + step, np.tile([0.0, 2.0], 10)]
        r = shift.compare(g, new, np.random.default_rng(1).normal(0, 1, (20, 3)), np.full(20, 0.1), bootstrap=20)
        return [line for line in r.differs if line.startswith("colour")], r.differs

    (line,), differs = named(0.5)
    assert "standardised difference +0.5" in line
    assert any(x.startswith("exposure (mean intensity)") for x in differs)
    assert named(0.5 - 1e-9)[0] == []
    (line,), _ = named(-0.5)
    assert "standardised difference -0.5" in line


def test_predicted_prevalence_counts_a_film_at_the_threshold_as_pneumonia(monkeypatch):
    monkeypatch.setattr(shift, "domain_auc", lambda ref, new, **kw: (0.5, 0.4, 0.6))
    g = shift_guard(np.c_[np.zeros(4), np.arange(4.0)], ref_prob=[0.3, below(0.3), 0.9, 0.0], prob_threshold=0.3)
    r = shift.compare(g, np.c_[np.zeros(4), np.arange(4.0)], np.zeros((4, 3)), np.array([0.3, 0.3, 0.0, 0.0]))
    assert r.metrics[names.TRAIN_PREVALENCE] == 0.5 and r.metrics[names.SHIFT_PREVALENCE] == 0.5


def test_the_domain_classifier_tells_apart_what_differs_and_not_what_does_not():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, (60, 5))
    same = shift.domain_auc(ref, rng.normal(0, 1, (60, 5)), bootstrap=200)
    moved = shift.domain_auc(ref, rng.normal(0.8, 1, (60, 5)), bootstrap=200)
    assert same[1] <= 0.5 + shift.MARGIN < moved[1]
    assert same[1] <= same[0] <= same[2] and moved[1] <= moved[0] <= moved[2]
    assert moved[0] > 0.8


def test_the_domain_auc_is_the_roc_auc_ties_counted_half():
    from sklearn.metrics import roc_auc_score

    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    s = np.array([0.1, 0.5, 0.5, 0.9, 0.3, 0.3, 0.7, 0.2])
    assert shift._auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


# -- the guard a job's model gets (ood_fit) -----------------------------------------------------


def _evaluation(ood_sample):
    from types import SimpleNamespace

    return SimpleNamespace(seed=0, ood_sample=ood_sample, ood_quantile=0.9)


def test_a_jobs_guard_is_fitted_and_reports_the_share_it_flags_of_each_split(tmp_path):
    from pneumo.evaluation import ood_fit

    model, splits = toy_model.splits(tmp_path)
    fitted = ood_fit.fit_or_why(model, splits, 0.5, _evaluation(ood.MIN_FILMS), batch_size=4)
    assert fitted.missing is None and isinstance(fitted.guard, ood.Guard)
    assert fitted.guard.prob_threshold == 0.5 and fitted.guard.quantile == 0.9
    assert len(fitted.guard.ref_img) == ood.MIN_FILMS  # the shift reference: evaluation.ood_sample films
    assert set(fitted.flagged) == {names.VAL_OOD_FLAGGED, names.TEST_OOD_FLAGGED}
    embed = ood_fit.embedding.embedder(model)
    for split, key in ((splits.val, names.VAL_OOD_FLAGGED), (splits.test, names.TEST_OOD_FLAGGED)):
        feats, _, emb = ood_fit.measure(embed, split, splits.root)  # each share is the guard's own verdict
        assert fitted.flagged[key] == fitted.guard.score(feats, emb)[1].mean()
    assert 0 <= fitted.flagged[names.VAL_OOD_FLAGGED] < fitted.flagged[names.TEST_OOD_FLAGGED] == 1.0


def test_a_job_whose_guard_cannot_be_fitted_says_why_and_ships_without_one(tmp_path, caplog):
    """One training film in the sample (evaluation.ood_sample=1, just under MIN_FILMS) has no spread."""
    from pneumo.evaluation import ood_fit

    model, splits = toy_model.splits(tmp_path)
    fitted = ood_fit.fit_or_why(model, splits, 0.5, _evaluation(ood.MIN_FILMS - 1), batch_size=4)
    assert fitted.guard is None and fitted.flagged == {}
    assert fitted.missing.startswith(f"{ood.MIN_FILMS - 1} training films (evaluation.ood_sample={ood.MIN_FILMS - 1})")
    assert [r.getMessage() for r in caplog.records if r.name == "pneumo"] == [
        f"no out-of-distribution guard for this model: {fitted.missing}"]


def test_films_are_measured_from_their_files_once_a_process_and_again_when_a_file_changes(tmp_path):
    """The guard's image features as imagestats measures each raw file: a film whose file is gone from its decoded
    square, a file that is no image left out. Measured again, a film's file is read from memory, unless it was
    rewritten: then its new content is measured."""
    from types import SimpleNamespace

    from pneumo.evaluation import imagestats, ood_fit

    films = {"a.png": toy_model.gray_png(60, side=64), "b.png": toy_model.gray_png(200, side=64), "junk.png": b"no png"}
    for name, data in films.items():
        (tmp_path / name).write_bytes(data)
    squares = np.full((4, 8, 8, 1), 90, np.uint8)
    subset = SimpleNamespace(paths=np.array(["a.png", "gone.png", "junk.png", "b.png"]), x=squares)
    want, ok = imagestats.many([films["a.png"], imagestats.from_array(squares[1]), films["junk.png"], films["b.png"]])
    ood_fit._file_features.cache_clear()
    got, got_ok = ood_fit._features(tmp_path, subset, np.arange(4))
    assert got_ok == ok == [0, 1, 3] and np.array_equal(got, want)
    assert ood_fit._file_features.cache_info().misses == 3  # a, junk, b: the gone film has no file to remember
    again, _ = ood_fit._features(tmp_path, subset, np.arange(4))
    assert np.array_equal(again, want) and ood_fit._file_features.cache_info().hits == 3
    (tmp_path / "a.png").write_bytes(toy_model.gray_png(200, side=64) + b"\0")  # a film replaced by another
    changed, _ = ood_fit._features(tmp_path, subset, np.arange(1))
    assert np.array_equal(changed[0], want[2]) and not np.array_equal(changed[0], want[0])
