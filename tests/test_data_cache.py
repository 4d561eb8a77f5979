"""Decode cache reuse, the `pneumo data` commands, and one check on the real Kermany train split."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from test_data_sources import BROKEN, expected_counts, write_kaggle_tree

from pneumo.commands.data import register
from pneumo.data import cache, load, synthetic
from pneumo.data.imaging import decode

from helpers import require

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "kermany-224"  # beside the checkout; absent in a user's clone


def _no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("decoded an image that should have come from the cache")

    monkeypatch.setattr(cache, "decode", refuse)


def test_second_load_decodes_nothing_and_cache_is_keyed_by_size(synthetic_root, data_cfg, monkeypatch, tmp_path):
    cfg = data_cfg(source="folder", root=str(synthetic_root))
    first = load(cfg, image_size=32, progress=False)
    path = synthetic_root / first.train.paths[0]
    assert np.array_equal(first.train.x[0, ..., 0], decode(path, 32))  # the one decoder, nothing else
    _no_decoding(monkeypatch)
    second = load(cfg, image_size=32, progress=False)
    for name in ("train", "val", "test"):
        a, b = getattr(first, name), getattr(second, name)
        assert np.array_equal(a.x, b.x) and list(a.paths) == list(b.paths)
    with pytest.raises(AssertionError, match="decoded an image"):
        load(cfg, image_size=40, progress=False)  # another size is another cache entry
    cached = (tmp_path / "cache" / "decoded").iterdir()
    assert sorted(p.name.split("-")[1] for p in cached) == ["32px.json", "32px.npy"]  # 32 px only


def test_an_edited_file_is_hashed_again_and_changes_the_digest(tmp_path, data_cfg, monkeypatch):
    from pneumo.data import index

    root = write_kaggle_tree(tmp_path / "d", broken=False) / "chest_xray"
    monkeypatch.setattr(cache, "_RACY_NS", 0)  # remember even just-written files, as for old ones
    before = load(data_cfg(source="folder", root=str(root)), image_size=32, progress=False)
    with monkeypatch.context() as m:  # unchanged files are not read again
        m.setattr(cache, "_sha256", lambda path: pytest.fail(f"re-hashed unchanged {path}"))
        assert load(data_cfg(source="folder", root=str(root)), image_size=32, progress=False).digest == before.digest
    edited, other = root / "train/NORMAL/IM-0006-0001.jpeg", root / "train/NORMAL/IM-0004-0001.jpeg"
    edited.write_bytes(other.read_bytes())
    after = index.scan(root, data_cfg().cache_dir)
    hashes = {e.path: e.hash for e in after.entries}
    assert hashes["train/NORMAL/IM-0006-0001.jpeg"] == hashes["train/NORMAL/IM-0004-0001.jpeg"]
    assert load(data_cfg(source="folder", root=str(root)), image_size=32, progress=False).digest != before.digest


def test_default_synthetic_source_is_generated_once_into_the_cache(data_cfg, monkeypatch):
    cfg = data_cfg(n_images=30, image_px=32, seed=5)
    first = load(cfg, image_size=32, progress=False)
    assert Path(first.root).parent == Path(cfg.cache_dir) / "synthetic"
    monkeypatch.setattr(synthetic, "_write", lambda *a: pytest.fail("regenerated a complete set"))
    _no_decoding(monkeypatch)
    assert load(cfg, image_size=32, progress=False).digest == first.digest


def test_concurrent_cold_loads_agree(synthetic_root, data_cfg):
    cfg = data_cfg(source="folder", root=str(synthetic_root))
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda _: load(cfg, image_size=32, progress=False), range(2))
    assert a.digest == b.digest and np.array_equal(a.train.x, b.train.x)
    leftovers = [p for p in Path(cfg.cache_dir, "decoded").iterdir() if p.suffix not in (".npy", ".json")]
    assert not leftovers  # temp files renamed into place, none left behind


def _run_cli(argv, capsys):
    parser = argparse.ArgumentParser(prog="pneumo")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_inspect_json_reports_counts_duplicates_broken_files_and_the_split(tmp_path, capsys):
    top = write_kaggle_tree(tmp_path / "dl")
    code, out, _ = _run_cli(["data", "inspect", str(top), "--json", "--size", "32", "--cache-dir",
                             str(tmp_path / "c"), "--plots", str(tmp_path / "plots")], capsys)
    rep = json.loads(out)
    assert code == 0
    assert rep["splits"] == expected_counts()
    assert rep["duplicates"]["count"] == 1 and sorted(rep["duplicates"]["groups"][0]) == [
        "train/PNEUMONIA/person1_bacteria_1.jpeg", "train/PNEUMONIA/person9_bacteria_9.jpeg"]
    assert {s["path"] for s in rep["skipped"]} == set(BROKEN) and all(s["reason"] for s in rep["skipped"])
    assert rep["leakage"]["ok"] is True
    assert sum(sum(c[k] for k in ("NORMAL", "PNEUMONIA")) for c in rep["carved"].values()) == rep["images"]
    assert set(rep["carved"]) == {"train", "val", "test"} and rep["patients"] > 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "class_counts_source.png", "class_counts_splits.png", "samples_train.png"]


def test_inspect_tables_and_errors(tmp_path, capsys, synthetic_root):
    code, out, _ = _run_cli(["data", "inspect", str(synthetic_root), "--size", "32", "--cache-dir", str(tmp_path)], capsys)
    assert code == 0 and "after splitting" in out and "leakage: none" in out
    code, out, err = _run_cli(["data", "inspect", str(tmp_path / "nowhere"), "--cache-dir", str(tmp_path)], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and str(tmp_path / "nowhere") in err
    assert "Traceback" not in err


def test_synth_writes_a_set_that_inspect_accepts(tmp_path, capsys):
    code, out, _ = _run_cli(["data", "synth", str(tmp_path / "s"), "--n-images", "20", "--size", "32"], capsys)
    assert code == 0 and (tmp_path / "s" / "train" / "NORMAL").is_dir() and str(tmp_path / "s") in out
    assert len(list((tmp_path / "s").rglob("*.jpeg"))) == 20


def test_download_without_credentials_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = _run_cli(["data", "download", "--dest", str(tmp_path / "k")], capsys)
    assert code == 2 and "kaggle.json" in err and err.count("\n") == 1


def test_inspect_json_through_the_installed_command(tmp_path, synthetic_root):
    run = subprocess.run([sys.executable, "-m", "pneumo", "data", "inspect", str(synthetic_root), "--json",
                          "--size", "32", "--cache-dir", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    rep = json.loads(run.stdout)
    assert sum(sum(c.values()) for c in rep["splits"].values()) == 60 and rep["leakage"]["ok"]


def test_real_kermany_train_split_counts_and_no_leakage(tmp_path):
    # CI has ../shared/data beside its clone; elsewhere a checkout without it skips, saying why.
    require(REAL_DATA.exists(), f"real data absent: no {REAL_DATA} (the Kermany films beside the checkout)")
    from pneumo.commands.data import report

    rep, splits = report(str(REAL_DATA), size=32, seed=0, cache_dir=str(tmp_path), progress=False)
    assert rep["splits"] == {"train": {"NORMAL": 1341, "PNEUMONIA": 3875}}
    assert rep["skipped"] == [] and rep["leakage"]["ok"]
    assert len(splits.train) + len(splits.val) + len(splits.test) == 5216
    assert rep["patients"] < 0.75 * 5216  # patients with several films: an image-level split would leak
    for sub in (splits.val, splits.test):
        assert abs(sub.y.mean() - 3875 / 5216) < 0.03 and 0.12 < len(sub) / 5216 < 0.18
