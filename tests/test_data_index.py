"""Patient ids, duplicate grouping, patient-disjoint stratified splits and the leakage check."""

from __future__ import annotations

import numpy as np
import pytest

from pneumo.data import DataError, Subset, load
from pneumo.data.base import LeakageError
from pneumo.data.index import Entry, patient_id
from pneumo.data.splits import assign, check_leakage, group_keys


@pytest.mark.parametrize(
    "name, patient",
    [
        ("person1_bacteria_1.jpeg", "person1_bacteria"),
        ("person1_virus_6.jpeg", "person1_virus"),  # virus counter is not the bacteria one
        ("person1946_bacteria_4874.jpeg", "person1946_bacteria"),
        ("person1946_bacteria_4875.JPEG", "person1946_bacteria"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("IM-0115-0002.jpeg", "IM-0115"),
        ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
        ("NORMAL2-IM-0645-0001-0002.jpeg", "NORMAL2-IM-0645"),
        ("train/NORMAL/IM-0115-0001.jpeg", "IM-0115"),
        ("scan_0042.png", "scan_0042"),  # unknown form: the file is its own patient
    ],
)
def test_patient_id_from_kermany_names(name, patient):
    assert patient_id(name) == patient


def test_identical_bytes_join_patients_into_one_group():
    patients = ["A", "A", "B", "C", "D", "E"]
    hashes = ["h1", "h2", "h2", "h3", "h3", "h4"]  # B shares a file with A, D with C
    assert group_keys(patients, hashes) == ["A", "A", "A", "C", "C", "E"]


def _entries(n_patients=160, seed=0, split="train"):
    rng = np.random.default_rng(seed)
    out = []
    for p in range(n_patients):
        label = int(rng.random() > 0.26)
        for k in range(int(rng.integers(1, 6))):
            out.append(Entry(f"{split}/{label}/p{p}_{k}.jpeg", label, f"{split}-p{p}", split, f"{split}{p}-{k}"))
    # exact copies filed under other patients: must follow their twin's split
    out += [Entry(f"{split}/1/copy{k}.jpeg", out[k].label, f"{split}-copy{k}", split, out[k].hash) for k in range(0, 40, 4)]
    return out


def test_carved_splits_are_patient_disjoint_stratified_and_sized():
    entries = _entries()
    parts, groups, dropped = assign(entries, seed=0, val_fraction=0.15, test_fraction=0.15, fold_kaggle_val=True)
    assert not dropped and sorted(sum(parts.values(), [])) == list(range(len(entries)))
    y = np.array([e.label for e in entries])
    for name, pos in parts.items():
        assert abs(y[pos].mean() - y.mean()) < 0.04, name  # class ratio within a few points
    assert 0.10 < len(parts["val"]) / len(entries) < 0.20 and 0.10 < len(parts["test"]) / len(entries) < 0.20
    for key in ([e.patient for e in entries], [e.hash for e in entries], groups):
        homes = {}
        for name, pos in parts.items():
            for i in pos:
                assert homes.setdefault(key[i], name) == name  # no patient, file or group in two splits


def test_split_is_deterministic_for_a_seed_and_changes_with_it():
    entries = _entries()
    kw = dict(val_fraction=0.15, test_fraction=0.15, fold_kaggle_val=True)
    assert assign(entries, seed=3, **kw)[0] == assign(entries, seed=3, **kw)[0]
    assert assign(entries, seed=3, **kw)[0] != assign(entries, seed=4, **kw)[0]


def test_source_test_keeps_its_images_and_train_copies_are_dropped():
    train, test = _entries(60, seed=1), _entries(20, seed=2, split="test")
    leak = Entry("train/1/person_dup.jpeg", 1, "xyz", "train", test[0].hash)
    parts, _, dropped = assign(train + test + [leak], seed=0, val_fraction=0.15, test_fraction=0.15,
                               fold_kaggle_val=True)
    assert len(parts["test"]) == len(test)  # the published test split is kept whole
    assert [p for p, _ in dropped] == ["train/1/person_dup.jpeg"] and "test/" in dropped[0][1]


def _subset(patients, hashes):
    n = len(patients)
    return Subset(np.zeros((n, 4, 4, 1), np.uint8), np.zeros(n, np.int64), np.array(patients), np.array(hashes),
                  np.array([f"f{i}" for i in range(n)]))


def test_leakage_check_raises_on_a_shared_patient_or_file():
    check_leakage({"train": _subset(["a", "b"], ["1", "2"]), "test": _subset(["c"], ["3"])})
    with pytest.raises(LeakageError, match="patient group b in train and test"):
        check_leakage({"train": _subset(["a", "b"], ["1", "2"]), "test": _subset(["b"], ["3"])})
    with pytest.raises(DataError, match="file sha256 2 in train and val"):
        check_leakage({"train": _subset(["a", "b"], ["1", "2"]), "val": _subset(["c"], ["2"])})
    with pytest.raises(LeakageError, match="patient IM-0001 in train and val"):  # raw keys, if given
        check_leakage({"train": _subset(["a"], ["1"]), "val": _subset(["c"], ["2"])},
                      {"train": ["IM-0001"], "val": ["IM-0001"]})


def test_load_gives_disjoint_splits_with_stable_digests(synthetic_root, data_cfg):
    cfg = data_cfg(source="folder", root=str(synthetic_root))
    splits = load(cfg, image_size=32, progress=False)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 60
    assert splits.test.paths.tolist() == sorted(p for p in splits.test.paths if p.startswith("test/"))
    assert {p.split("/")[0] for p in splits.val.paths} == {"train"}  # val carved from train
    seen = {}
    for name in ("train", "val", "test"):
        sub = getattr(splits, name)
        assert sub.x.shape == (len(sub), 32, 32, 1) and sub.x.dtype == np.uint8 and sub.y.dtype == np.int64
        assert list(sub.paths) == sorted(sub.paths)  # deterministic order
        for p in sub.paths:
            assert seen.setdefault(patient_id(p), name) == name
    again = load(cfg, image_size=32, progress=False)
    assert (again.digest, again.test_digest) == (splits.digest, splits.test_digest)
    assert load(data_cfg(source="folder", root=str(synthetic_root), seed=1), 32, False).digest != splits.digest
