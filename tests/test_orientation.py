"""Issue 28, item 5: a film fed upside down (or mirrored) is flagged by the out-of-distribution guard.

Fast tests on synthetic films (pneumo.data.synthetic, rendered here) with the guard fitted as the job
fits it (pneumo.evaluation.ood.fit); the embedding half gets plain random vectors, the same for a film
and its turned copies, so what tells them apart is the image side. The real-data test measures the
rates of docs/trust.md on the Kermany films and skips where they are absent (a user's clone, CI).
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import norm

from pneumo.data import synthetic
from pneumo.evaluation import imagestats, ood, orientation

from helpers import require

QUANTILE = 0.99
DIMS = 4  # of the stand-in embedding
TURNS = {"flipped top-to-bottom": Image.Transpose.FLIP_TOP_BOTTOM, "rotated 180": Image.Transpose.ROTATE_180,
         "mirrored": Image.Transpose.FLIP_LEFT_RIGHT}


def _turned(blob: bytes, how) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(blob)).transpose(how).save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """(guard, validation rows, held-out film files): fitted on 300 synthetic films, lines on 100 others."""
    root = synthetic.generate(tmp_path_factory.mktemp("films") / "set", n_images=480, image_px=64, seed=3)
    train = sorted((root / "train").rglob("*.jpeg"))
    held_out = [f.read_bytes() for f in sorted((root / "test").rglob("*.jpeg"))]
    rows = imagestats.many([f.read_bytes() for f in train])[0]
    fit_rows, val_rows = rows[: len(rows) - 100], rows[len(rows) - 100:]
    rng = np.random.default_rng(0)
    guard = ood.fit(fit_rows, rng.normal(size=(len(fit_rows), DIMS)), val_rows, rng.normal(size=(100, DIMS)),
                    rng.uniform(size=100), prob_threshold=0.5, quantile=QUANTILE, names=imagestats.FEATURES)
    return guard, val_rows, held_out


def _score(guard, blobs):
    rows = np.stack([imagestats.features(b) for b in blobs])
    return guard.score(rows, np.zeros((len(rows), DIMS)))  # the training embeddings' centre: no embedding distance


def test_upside_down_and_mirrored_films_are_flagged_and_the_same_films_upright_are_not(fitted):
    guard, _, held_out = fitted
    score, flagged = _score(guard, held_out)
    assert flagged.mean() <= 0.05, score  # toy films upright: the check must not flag the collection itself
    for name, how in TURNS.items():
        turned_score, turned_flagged = _score(guard, [_turned(b, how) for b in held_out])
        assert turned_flagged.all(), (name, turned_score)
    distance = np.maximum(*guard.distances(np.stack([imagestats.features(b) for b in held_out]),
                                           np.zeros((len(held_out), DIMS)))) / guard.threshold
    assert (score >= distance - 1e-12).all()  # the check only adds flags: what the distances flagged stays flagged


def test_the_line_holds_films_just_inside_and_flags_them_just_outside(fitted):
    """A film's layout moved from upright towards its upside-down copy: its ratio rises linearly (the check
    is affine in the layout), and the guard flags it from just past 1.0 on, not before."""
    guard, _, held_out = fitted
    film = held_out[0]
    up, down = (np.stack([imagestats.features(b)]) for b in (film, _turned(film, Image.Transpose.FLIP_TOP_BOTTOM)))
    r_up, r_down = guard.turned(up)[0, 0], guard.turned(down)[0, 0]
    assert r_up < 1 < r_down
    t = (1 - r_up) / (r_down - r_up)  # where the upside-down check reads exactly 1.0
    for eps, expected in ((-1e-6, False), (1e-6, True)):
        row = up.copy()
        n = len(imagestats.FEATURES)
        row[:, n:] = (1 - (t + eps)) * up[:, n:] + (t + eps) * down[:, n:]
        score, flagged = guard.score(row, np.zeros((1, DIMS)))
        assert bool(flagged[0]) is expected, (eps, score)
        assert score[0] == pytest.approx(1.0, abs=1e-5)  # the orientation ratio is the score here, not a distance


def test_each_check_s_line_is_its_quantile_of_validation_films(fitted):
    """Each check's ratio is r / line with r = 1 - s / median(s): 0 at the median validation film, and 1.0 at
    the 1 - (1 - quantile) / 2 quantile of validation films (or a normal fitted to them, when higher): the
    two checks together hold ~1 - quantile of validation films, as the distances do. The ratio scales out."""
    guard, val_rows, _ = fitted
    ratios = guard.turned(val_rows)
    assert ratios.shape == (len(val_rows), len(orientation.CHECKS))
    q = 1 - (1 - QUANTILE) / 2
    for rho in ratios.T:
        assert np.median(rho) == pytest.approx(0, abs=1e-9)
        line = max(np.quantile(rho, q), rho.mean() + norm.ppf(q) * rho.std(ddof=1))
        assert line == pytest.approx(1.0, abs=1e-9)


class Format1:
    """A guard that saves its statistics as pneumo did before the orientation check (FORMAT 1, no orient_*
    arrays): what a version registered then carries. package.log_model calls its save()."""

    def __init__(self, guard: ood.Guard):
        self.guard = guard

    def save(self, path) -> None:
        np.savez(path, format=1, **{k: np.asarray(v) for k, v in vars(self.guard).items() if not k.startswith("orient_")})


def test_statistics_saved_before_the_orientation_check_load_and_score_without_it(fitted, tmp_path):
    guard, _, held_out = fitted
    Format1(guard).save(tmp_path / "old.npz")
    old = ood.Guard.load(tmp_path / "old.npz")
    assert old.orient_w is None and old.orient_b is None
    blobs = held_out + [_turned(b, Image.Transpose.ROTATE_180) for b in held_out]
    rows = np.stack([imagestats.features(b) for b in blobs])
    score, _ = old.score(rows, np.zeros((len(rows), DIMS)))
    np.testing.assert_allclose(score, np.maximum(*guard.distances(rows, np.zeros((len(rows), DIMS)))) / guard.threshold)
    assert old.turned(rows).shape == (len(rows), 0)
    guard.save(tmp_path / "new.npz")
    again = ood.Guard.load(tmp_path / "new.npz")
    np.testing.assert_allclose(again.score(rows, np.zeros((len(rows), DIMS)))[0], _score(guard, blobs)[0])


def test_statistics_from_a_newer_pneumo_are_refused_saying_so(fitted, tmp_path):
    guard, _, _ = fitted
    guard.save(tmp_path / "g.npz")
    with np.load(tmp_path / "g.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["format"] = np.asarray(ood.FORMAT + 1)
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(ValueError, match="newer pneumo"):
        ood.Guard.load(tmp_path / "future.npz")


def test_a_collection_that_cannot_be_oriented_gets_no_check():
    """Films symmetric under every flip: no discriminant can tell them turned, so the check is off (ratio 0)
    instead of flagging half the collection."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(200, 8, 8))
    sym = (base + base[:, ::-1] + base[:, :, ::-1] + base[:, ::-1, ::-1]).reshape(200, 64)
    w, b = orientation.fit(sym[:150], sym[150:], QUANTILE)
    assert not w.any() and not b.any()


@pytest.mark.parametrize("right, kept", [(75, True), (74, False)])
def test_a_check_is_kept_from_three_pairs_in_four_ordered_right(right, kept):
    """The line between a check and rounding noise: upright scores above the turned ones in 75 pairs of 100
    (AUC 0.75) keeps it, 74 switches it off."""
    upright, turned = np.full(100, 2.0), np.r_[np.ones(right), np.full(100 - right, 3.0)]
    assert orientation.tells_apart(upright, turned) is kept


def test_fit_switches_off_each_check_that_does_not_tell_the_films_apart(monkeypatch):
    """The AUC line is what fit obeys, whatever the sign of the rounding noise: films with a top and a side get
    both checks, and the same films get none when no check is said to tell them apart."""
    rng = np.random.default_rng(2)
    tilt = np.linspace(-1, 1, 8)
    films = (rng.normal(scale=0.3, size=(200, 8, 8)) + tilt[:, None] + 0.5 * tilt[None, :]).reshape(200, 64)
    w, b = orientation.fit(films[:150], films[150:], QUANTILE)
    assert w.any(axis=1).all()
    monkeypatch.setattr(orientation, "tells_apart", lambda upright, turned: False)
    w, b = orientation.fit(films[:150], films[150:], QUANTILE)
    assert not w.any() and not b.any()


ROOT = Path(__file__).resolve().parent.parent
# Beside the checkout on the dev machine and in CI (or beside the folder of its git worktrees); absent in a user's clone.
REAL = next((p for p in (ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data") if p.is_dir()),
            ROOT.parent / "shared" / "data")


@pytest.mark.slow
def test_real_films_turned_around_are_flagged_and_upright_ones_are_not(tmp_path):
    """docs/trust.md's rates, on pneumo's own split: fitted on training films, lines on validation films, read on
    the test split's films (never fitted) and the external set, upright and turned."""
    require((REAL / "kermany-224" / "train").is_dir(), f"real data absent: no {REAL}/kermany-224")
    spec = importlib.util.spec_from_file_location("orientation_doc", ROOT / "docs" / "orientation.py")
    doc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(doc)
    s = doc.splits(str(REAL / "kermany-224"), str(tmp_path / "cache"))
    rates = {k: share for k, (_, share) in doc.check_rates(s, doc.external_files(REAL / "kermany-224-external"),
                                                             train_sample=1000).items()}
    assert rates["validation films (upright)"] <= 0.012  # two lines at 0.5% of validation films each
    assert rates["test films (upright)"] <= 0.02 and rates["external films (upright)"] <= 0.05
    for where in ("test", "external"):
        assert rates[f"{where} films upside down (flipped top-to-bottom)"] >= 0.97, rates
        assert rates[f"{where} films upside down (rotated 180 degrees)"] >= 0.97, rates
        assert rates[f"{where} films mirrored (flipped left-to-right)"] >= 0.75, rates
