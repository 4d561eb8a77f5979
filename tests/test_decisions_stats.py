"""The numbers the gates read, and the referral band, pinned at their lines (issue 27): the threshold
policies, a probability at the threshold counting as PNEUMONIA, the patient bootstrap agreeing with
scikit-learn on the undrawn sample, the paired bootstrap's direction and its ties, and the referral
band's width and both its open edges. Hand-made numbers only (probabilities in 1/8ths: exact in floats).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from pneumo.evaluation import referral, stats
from pneumo.record import names


def above(x: float) -> float:
    return float(np.nextafter(x, np.inf))


def below(x: float) -> float:
    return float(np.nextafter(x, -np.inf))


# -- threshold and metrics ----------------------------------------------------------------------


def test_the_sensitivity_policy_takes_the_highest_threshold_reaching_the_target_exactly():
    """20 PNEUMONIA films: 19 of them is exactly 0.95; the threshold keeps 19, not all 20."""
    pos = np.linspace(0.3, 0.99, 20)
    neg = np.linspace(0.01, 0.6, 20)
    y, p = np.r_[np.ones(20), np.zeros(20)], np.r_[pos, neg]
    t = stats.choose_threshold(y, p, "sensitivity", 0.95)
    assert t == np.sort(pos)[1]
    assert stats.score(y, p, t)[names.TEST_SENSITIVITY] == 0.95
    assert stats.choose_threshold(y, p, "sensitivity", above(0.95)) == np.sort(pos)[0]


def test_youden_takes_the_threshold_of_the_largest_tpr_minus_fpr():
    y = np.array([0, 0, 0, 1, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert stats.choose_threshold(y, p, "youden") == 0.4  # tpr 1, fpr 1/4: 0.75, the unique best (0.7: 0.5)


def test_one_class_in_validation_falls_back_to_one_half_and_warns():
    with pytest.warns(UserWarning, match="one class"):
        assert stats.choose_threshold(np.ones(5), np.linspace(0, 1, 5)) == 0.5


def test_a_probability_at_the_threshold_is_pneumonia():
    y = np.array([1, 0, 1, 0])
    m = stats.score(y, np.array([0.5, 0.5, below(0.5), below(0.5)]), 0.5)
    assert m[names.TEST_SENSITIVITY] == 0.5 and m[names.TEST_SPECIFICITY] == 0.5
    assert stats.score(y, np.array([0.5, below(0.5), 0.9, 0.1]), 0.5)[names.TEST_ACCURACY] == 1.0


def _sample():
    rng = np.random.default_rng(0)
    y = (rng.random(60) < 0.6).astype(int)
    p = np.round(rng.random(60) * 8) / 8  # ties, and films exactly at the threshold
    p = np.where(y == 1, np.minimum(p + 0.25, 1), p)
    patients = np.repeat(np.arange(20), 3)
    return y, p, patients


def test_the_bootstrap_counts_of_the_undrawn_sample_give_scikit_learns_metrics():
    """Every patient drawn once: the resampler's formulas (ties, the threshold, AUPRC) must agree exactly."""
    y, p, patients = _sample()
    for threshold in (0.5, 0.625):
        rs = stats._Resampler(y, p, patients, threshold)
        once = rs.metrics(np.ones((1, rs.n_patients)))
        point = stats.score(y, p, threshold)
        for name in names.TEST_METRICS:
            assert once[name][0] == pytest.approx(point[name], abs=1e-12), name


def test_the_ci_is_the_central_percentile_interval_at_the_confidence():
    values = np.arange(1001, dtype=float)
    assert stats._interval(values, 0.95) == pytest.approx((25.0, 975.0))
    assert stats._interval(values, 0.5) == pytest.approx((250.0, 750.0))
    assert stats._interval(np.r_[values, np.nan, np.inf], 0.95) == pytest.approx((25.0, 975.0))  # undefined: out


def test_evaluate_logs_each_metric_inside_its_ci_and_the_threshold():
    y, p, patients = _sample()
    out = stats.evaluate(y, p, patients, 0.5, bootstrap=300)
    assert out[names.THRESHOLD] == 0.5
    for name in (names.TEST_AUC, names.TEST_SENSITIVITY, names.TEST_SPECIFICITY):
        low, high = names.ci_names(name)
        assert out[low] <= out[name] <= out[high] and out[low] < out[high]
    narrow = stats.evaluate(y, p, patients, 0.5, bootstrap=300, confidence=0.5)
    low, high = names.ci_names(names.TEST_AUC)
    assert out[low] < narrow[low] and narrow[high] < out[high]


def test_the_paired_difference_is_candidate_minus_champion_and_a_tie_counts_as_no_better():
    y, p, patients = _sample()
    better = np.where(y == 1, np.minimum(p + 0.125, 1), np.maximum(p - 0.125, 0))
    r = stats.paired_bootstrap(y, p, better, patients, names.TEST_AUC, 0.5, 0.5, n=400)
    assert r.delta > 0 and r.ci_low > 0 and r.p_value < 0.05
    worse = stats.paired_bootstrap(y, better, p, patients, names.TEST_AUC, 0.5, 0.5, n=400)
    assert worse.delta == -r.delta and worse.ci_high < 0 and worse.p_value > 0.95
    same = stats.paired_bootstrap(y, p, p, patients, names.TEST_AUC, 0.5, 0.5, n=400)
    assert same.delta == same.ci_low == same.ci_high == 0 and same.p_value == 1.0
    brier = stats.paired_bootstrap(y, p, better, patients, names.TEST_BRIER, 0.5, 0.5, n=400)
    assert brier.delta < 0 and brier.ci_high < 0 and brier.p_value < 0.05  # lower is better
    same = stats.paired_bootstrap(y, p, p, patients, names.TEST_BRIER, 0.5, 0.5, n=400)
    assert same.p_value == 1.0


def test_the_paired_difference_scores_each_model_at_its_own_threshold():
    y, p, patients = _sample()
    r = stats.paired_bootstrap(y, p, p, patients, names.TEST_SENSITIVITY, 0.75, 0.25, n=200)
    assert r.delta == stats.score(y, p, 0.25)[names.TEST_SENSITIVITY] - stats.score(y, p, 0.75)[names.TEST_SENSITIVITY]
    assert r.delta > 0


def test_auc_ranks_the_films_and_is_nan_with_one_class():
    """3 of the 4 (pneumonia, normal) pairs ranked right: 0.75; labels given as bools or floats count the same;
    one class has no AUC (nan, not an error), as a validation split of one class has none."""
    y, p = [1, 1, 0, 0], [0.875, 0.25, 0.5, 0.125]
    assert stats.auc(y, p) == 0.75
    assert stats.auc(np.array(y, bool), p) == stats.auc(np.array(y, float), p) == 0.75
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nan without scikit-learn's UndefinedMetricWarning in the log
        assert np.isnan(stats.auc([1, 1, 1], [0.25, 0.5, 0.75]))
        assert np.isnan(stats.auc([0, 0], [0.25, 0.5]))


def test_hanley_mcneil_standard_error_is_not_symmetric_in_the_class_counts():
    assert stats.auc_standard_error(0.8, 30, 10) == pytest.approx(0.0724185366, abs=1e-9)
    assert stats.auc_standard_error(0.8, 10, 30) == pytest.approx(0.0905947427, abs=1e-9)


# -- the referral band --------------------------------------------------------------------------

# Threshold 0.5; distances 1/2, 1/2, 3/8, 3/8, 1/4, 1/16. The last two are wrong (0.75 a healthy film,
# 0.4375 a sick one): deciding films from distance 1/4 up is 4 right of 5 = 0.8 accurate, from 3/8 up 1.0.
Y = np.array([1, 0, 1, 0, 0, 1])
P = np.array([1.0, 0.0, 0.875, 0.125, 0.75, 0.4375])


def test_the_band_is_the_narrowest_reaching_the_target_accuracy_exactly():
    assert referral.choose_band(Y, P, 0.5, 0.8) == (0.25, 0.75)
    assert referral.choose_band(Y, P, 0.5, above(0.8)) == (0.125, 0.875)
    assert referral.choose_band(Y, P, 0.5, 1.0) == (0.125, 0.875)  # the narrowest of the two widths reaching 1.0
    assert referral.choose_band(Y, P, 0.5, 4 / 6) == (0.4375, 0.5625)  # every film decided: the nearest one's width


def test_the_band_is_open_a_film_on_its_edge_is_decided():
    band = referral.choose_band(Y, P, 0.5, 0.8)
    assert list(referral.referred(P, band)) == [False, False, False, False, False, True]
    assert list(referral.referred([0.25, above(0.25), 0.5, below(0.75), 0.75], band)) == [False, True, True, True,
                                                                                           False]
    assert not referral.referred(P, None).any()


def test_the_decided_films_metrics():
    m = referral.decided_metrics(Y, P, 0.5, (0.25, 0.75))
    assert m[names.TEST_COVERAGE] == 5 / 6 and m[names.TEST_DECIDED_ACCURACY] == 0.8
    assert m[names.TEST_DECIDED_SENSITIVITY] == 1.0 and m[names.TEST_DECIDED_SPECIFICITY] == 2 / 3
    assert (m[names.REFER_LOW], m[names.REFER_HIGH]) == (0.25, 0.75)
    at = referral.decided_metrics([1, 0], [0.5, below(0.5)], 0.5, (0.5, 0.5))  # an empty band: both decided
    assert at[names.TEST_DECIDED_SENSITIVITY] == 1.0 and at[names.TEST_DECIDED_SPECIFICITY] == 1.0


def test_a_band_that_refers_every_film_decides_none_and_says_so_without_a_warning():
    """Every film referred: coverage 0 and no decided metric (nan, not 0 and not a numpy warning in the log);
    no films at all: no coverage either. Without a band every film is decided: a boolean mask of False."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = referral.decided_metrics([1, 0, 1], [0.5, 0.375, 0.625], 0.5, (0.25, 0.75))
        empty = referral.decided_metrics(np.array([], int), np.array([]), 0.5, (0.25, 0.75))
    assert m[names.TEST_COVERAGE] == 0.0
    assert all(np.isnan(m[k]) for k in (names.TEST_DECIDED_ACCURACY, names.TEST_DECIDED_SENSITIVITY,
                                         names.TEST_DECIDED_SPECIFICITY))
    assert np.isnan(empty[names.TEST_COVERAGE]) and np.isnan(empty[names.TEST_DECIDED_ACCURACY])
    none = referral.referred([[0.25, 0.5]], None)
    assert none.dtype == bool and none.shape == (1, 2) and not none.any()


def test_a_target_no_width_reaches_takes_the_most_accurate_and_warns():
    y, p = np.array([0, 1, 1, 0]), np.array([1.0, 0.75, 0.25, 0.375])  # the farthest film is wrong
    with pytest.warns(UserWarning, match="no band reaches it"):
        band = referral.choose_band(y, p, 0.5, 0.99)
    assert band == (0.375, 0.625)  # deciding all four: 2 right, the best there is (d >= 1/4: 1 of 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert referral.choose_band(np.array([], int), np.array([]), 0.5, 0.9) == (0.5, 0.5)


def test_with_no_band_reaching_the_target_the_best_width_is_taken_wherever_it_lies():
    """Films by distance from 0.5 (16ths): 8 wrong, 7 6 5 right, 2 1 wrong. Deciding d >= 5/16 is the best
    (3 of 4), neither the narrowest nor the widest band; the warning names it, at the caller's line."""
    y = np.array([0, 1, 0, 1, 0, 1])
    p = np.array([16, 15, 2, 13, 10, 7]) / 16
    with pytest.warns(UserWarning) as caught:
        band = referral.choose_band(y, p, 0.5, 0.8)
    assert band == (3 / 16, 13 / 16)
    assert str(caught[0].message).endswith("the best decides 67% of films at accuracy 0.750")
    assert Path(caught[0].filename).name != "referral.py"  # the caller's line, not the library's


def test_the_coverage_curve_of_one_film_and_its_picture(tmp_path):
    widths, coverage, accuracy = referral._curve([1], [0.75], 0.5)
    assert list(widths) == [0.25] and list(coverage) == [1.0] and list(accuracy) == [1.0]
    from PIL import Image

    # a band wider than every film's distance (no marker to place) into a folder not made yet
    path = referral.write_curve(tmp_path / "new" / "evaluation", {"test": ([1, 0], [0.75, 0.25])}, (0.0, 1.0), 0.5)
    assert path == tmp_path / "new" / "evaluation" / Path(names.COVERAGE_PLOT).name
    assert Image.open(path).size == (450, 400)  # 4.5 x 4 in at 100 dpi


def test_a_film_at_the_threshold_is_decided_pneumonia_for_the_band_too():
    widths, coverage, accuracy = referral._curve(np.array([1, 0]), np.array([0.5, 0.25]), 0.5)
    assert list(widths) == [0.0, 0.25] and list(accuracy) == [1.0, 1.0] and list(coverage) == [1.0, 0.5]
