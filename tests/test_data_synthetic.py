"""The built-in synthetic set: Kermany-shaped, deterministic, learnable but not trivially."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from pneumo.data import DataError, synthetic
from pneumo.data.index import is_kermany_name, patient_id


def _files(root):
    return sorted(p for p in root.rglob("*.jpeg"))


def test_kaggle_layout_kermany_names_and_class_balance(synthetic_root):
    assert {p.relative_to(synthetic_root).parts[:2] for p in _files(synthetic_root)} == {
        (s, c) for s in ("train", "test") for c in ("NORMAL", "PNEUMONIA")
    }
    files = _files(synthetic_root)
    assert len(files) == 60 and all(is_kermany_name(p.name) for p in files)
    assert abs(sum(p.parent.name == "NORMAL" for p in files) / len(files) - 0.26) < 0.02
    names = {p.name for p in files}
    assert any(n.startswith("NORMAL2-IM-") for n in names) and any(n.startswith("IM-") for n in names)
    assert any("_bacteria_" in n for n in names) and any("_virus_" in n for n in names)
    per_patient = Counter(patient_id(p.name) for p in files)
    assert max(per_patient.values()) >= 2  # some patients have several films
    # a patient's films all sit in one split, like Kermany's own train/test
    split_of = {}
    for p in files:
        assert split_of.setdefault(patient_id(p.name), p.parts[-3]) == p.parts[-3]
    with Image.open(files[0]) as im:
        assert im.mode == "L" and im.size == (48, 48)


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = synthetic.generate(tmp_path / "a", n_images=24, image_px=32, seed=7)
    b = synthetic.generate(tmp_path / "b", n_images=24, image_px=32, seed=7)
    c = synthetic.generate(tmp_path / "c", n_images=24, image_px=32, seed=8)
    read = lambda root: {p.relative_to(root): p.read_bytes() for p in _files(root)}  # noqa: E731
    assert read(a) == read(b)
    assert read(a) != read(c)


def test_generate_reuses_a_complete_set_and_refuses_foreign_folders(tmp_path):
    out = synthetic.generate(tmp_path / "s", n_images=16, image_px=32, seed=0)
    stamp = (out / synthetic.MARKER).stat().st_mtime_ns
    assert synthetic.generate(out, n_images=16, image_px=32, seed=0) == out
    assert (out / synthetic.MARKER).stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="different synthetic set"):
        synthetic.generate(out, n_images=16, image_px=32, seed=1)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a synthetic set"):
        synthetic.generate(tmp_path / "mine", n_images=16, image_px=32)


def test_signal_is_learnable_but_not_trivial(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    root = synthetic.generate(tmp_path / "s", n_images=800, image_px=32, seed=0)
    files = _files(root)
    x = np.stack([np.asarray(Image.open(p).resize((16, 16), Image.BILINEAR), np.float32).ravel() / 255 for p in files])
    y = np.array([p.parent.name == "PNEUMONIA" for p in files])
    groups = [patient_id(p.name) for p in files]
    model = LogisticRegression(C=0.1, max_iter=3000)
    proba = cross_val_predict(model, x, y, groups=groups, cv=GroupKFold(5), method="predict_proba")[:, 1]
    # A linear model on pixels finds the signal but not all of it (a small CNN reaches ~0.9).
    assert 0.65 < roc_auc_score(y, proba) < 0.99
