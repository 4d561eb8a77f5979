"""The served label pinned at its lines (issue 27): PNEUMONIA from the threshold up, REFER strictly
inside the referral band at both edges, OUT_OF_DISTRIBUTION over any other answer, nothing for an
unreadable row. The registered pyfunc's own predict(), on measurements (probability, image
features, embedding) chosen here: no model is loaded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pneumo.evaluation import ood


def below(x: float) -> float:
    return float(np.nextafter(x, -np.inf))


def above(x: float) -> float:
    return float(np.nextafter(x, np.inf))


def unit_guard(threshold: float) -> ood.Guard:
    """A guard whose distances are plain Euclidean lengths: image features (2) and embedding (3) at 0."""
    z2, z3 = np.zeros(2), np.zeros(3)
    return ood.Guard(z2, np.ones(2), z2, np.eye(2), z3, np.eye(3), 1.0, 1.0, threshold, 0.99, np.zeros((4, 2)),
                     np.zeros((4, 3)), np.zeros(4), 0.5, np.array(["mean", "std"]))


def served(probabilities, threshold=0.5, band=None, guard=None, img=None, emb=None, errors=None):
    """The registered pyfunc's predict() on rows whose measurements (probability, features, embedding) are given."""
    from pneumo.release.serving import PneumoniaModel

    probabilities = np.asarray(probabilities, float)
    errors = errors or [""] * len(probabilities)
    rows = np.array([i for i, e in enumerate(errors) if not e], int)
    model = PneumoniaModel()
    model.threshold, model.band, model.guard, model.embed = threshold, band, guard, None
    model.measure = lambda blobs: {"rows": rows, "errors": errors, "prob": probabilities[rows],
                                   "feats": None if img is None else np.asarray(img, float)[rows],
                                   "emb": None if emb is None else np.asarray(emb, float)[rows]}
    return model.predict(None, pd.DataFrame({"image": [b""] * len(probabilities)}))


def test_the_label_is_pneumonia_from_the_threshold_up():
    out = served([0.3, below(0.3), above(0.3), 1.0, 0.0], threshold=0.3)
    assert list(out["label"]) == ["PNEUMONIA", "NORMAL", "PNEUMONIA", "PNEUMONIA", "NORMAL"]
    assert out["ood"].isna().all() and out["ood_flag"].isna().all()  # no guard: the columns stay empty


def test_refer_is_strictly_inside_the_band_at_both_edges():
    low, high = 0.25, 0.75
    p = [low, above(low), 0.5, below(high), high, 0.0, 1.0]
    out = served(p, threshold=0.5, band=(low, high))
    assert list(out["label"]) == ["NORMAL", "REFER", "REFER", "REFER", "PNEUMONIA", "NORMAL", "PNEUMONIA"]
    assert list(out["probability"]) == p  # the probability stays
    from pneumo.evaluation.referral import referred

    assert list(referred(p, (low, high))) == [label == "REFER" for label in out["label"]]  # one rule for test and serving
    assert list(served(p, threshold=0.5)["label"]) == ["NORMAL"] * 2 + ["PNEUMONIA"] * 3 + ["NORMAL", "PNEUMONIA"]


def test_a_flagged_film_reads_out_of_distribution_whatever_its_probability():
    g = unit_guard(threshold=2.0)
    img = [[2.0, 0], [above(2.0), 0], [0, 0], [0, 0], [0, 0]]
    emb = [[0, 0, 0], [0, 0, 0], [0, 2.0, 0], [0, above(2.0), 0], [0, 0, 0]]
    out = served([0.9, 0.5, 0.1, 0.5, 0.5], threshold=0.5, band=(0.4, 0.6), guard=g, img=img, emb=emb)
    assert list(out["ood_flag"]) == [False, True, False, True, False]
    assert list(out["label"]) == ["PNEUMONIA", "OUT_OF_DISTRIBUTION", "NORMAL", "OUT_OF_DISTRIBUTION", "REFER"]
    np.testing.assert_allclose(out["ood"], [1.0, above(2.0) / 2, 1.0, above(2.0) / 2, 0.0])


def test_an_unreadable_row_gets_no_label_and_no_probability():
    out = served([0.9, 0.9], band=(0.4, 0.6), guard=unit_guard(2.0), img=[[0, 0], [9, 9]], emb=[[0] * 3, [0] * 3],
                 errors=["", "not an image"])
    assert list(out["label"]) == ["PNEUMONIA", ""] and np.isnan(out["probability"][1])
    assert out["ood_flag"][1] is None and out["error"][1] == "not an image"
