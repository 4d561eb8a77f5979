"""Folder and Kaggle sources on the real archive's shape and quirks; errors a user can act on."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumo.data import DataError, load
from pneumo.data import kaggle as kaggle_source

from helpers import clean_env

# (split, class, file name, how it is written); `broken` files must be skipped with a reason.
GOOD = [
    ("train", "NORMAL", "IM-0001-0001.jpeg", "gray"), ("train", "NORMAL", "IM-0001-0002.JPEG", "rgb"),
    ("train", "NORMAL", "NORMAL2-IM-0002-0001.jpg", "gray"), ("train", "NORMAL", "IM-0003-0001.png", "png"),
    ("train", "NORMAL", "IM-0004-0001.jpeg", "rgb"), ("train", "NORMAL", "NORMAL2-IM-0005-0001.jpeg", "gray"),
    ("train", "NORMAL", "IM-0006-0001.jpeg", "gray"),
    ("train", "PNEUMONIA", "person1_bacteria_1.jpeg", "gray"), ("train", "PNEUMONIA", "person1_bacteria_2.jpeg", "rgb"),
    ("train", "PNEUMONIA", "person1_virus_1.jpeg", "gray"), ("train", "PNEUMONIA", "person2_virus_2.JPG", "rgb"),
    ("train", "PNEUMONIA", "person3_bacteria_3.png", "png"), ("train", "PNEUMONIA", "person4_bacteria_4.jpeg", "gray"),
    ("train", "PNEUMONIA", "person5_virus_5.jpeg", "gray"), ("train", "PNEUMONIA", "person6_bacteria_6.jpeg", "rgb"),
    ("train", "PNEUMONIA", "person7_bacteria_7.jpeg", "gray"), ("train", "PNEUMONIA", "person8_virus_8.jpeg", "gray"),
    ("val", "NORMAL", "NORMAL2-IM-1427-0001.jpeg", "gray"), ("val", "PNEUMONIA", "person1946_bacteria_4874.jpeg", "gray"),
    ("test", "NORMAL", "IM-0020-0001.jpeg", "gray"), ("test", "NORMAL", "IM-0021-0001.jpeg", "rgb"),
    ("test", "PNEUMONIA", "person20_virus_20.jpeg", "gray"), ("test", "PNEUMONIA", "person21_bacteria_21.jpeg", "gray"),
]
BROKEN = {
    "train/PNEUMONIA/person90_bacteria_1.jpeg": "empty",
    "train/PNEUMONIA/person91_bacteria_2.jpeg": "truncated",
    "train/PNEUMONIA/person92_virus_3.jpeg": "text",
    "train/NORMAL/notes.txt": "text",
}
COPY = ("train/PNEUMONIA/person9_bacteria_9.jpeg", "train/PNEUMONIA/person1_bacteria_1.jpeg")  # same bytes


def _image_bytes(seed: int, how: str, size: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    a = (120 + 60 * np.sin(xx / (3 + seed % 5)) + rng.normal(0, 20, (size, size))).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(a, "L")
    buf = io.BytesIO()
    if how == "rgb":
        Image.merge("RGB", (img, img, img)).save(buf, "JPEG")
    else:
        img.save(buf, "PNG" if how == "png" else "JPEG")
    return buf.getvalue()


def write_kaggle_tree(top: Path, broken: bool = True) -> Path:
    """The archive's shape: chest_xray/{train,val,test}, a nested chest_xray/chest_xray/ copy, __MACOSX/."""
    root = top / "chest_xray"
    for i, (split, cls, name, how) in enumerate(GOOD):
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        (root / split / cls / name).write_bytes(_image_bytes(i, how))
    (root / COPY[0]).write_bytes((root / COPY[1]).read_bytes())
    if broken:
        good = _image_bytes(99, "gray")
        content = {"empty": b"", "truncated": good[: len(good) // 2], "text": b"radiology report, not an image\n"}
        for rel, kind in BROKEN.items():
            (root / rel).write_bytes(content[kind])
    for meta in ("train/.DS_Store", "train/NORMAL/.DS_Store", "train/NORMAL/._IM-0001-0001.jpeg"):
        (root / meta).write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    for split in ("train", "val", "test"):
        shutil.copytree(root / split, root / "chest_xray" / split)
    mac = top / "__MACOSX" / "chest_xray" / "train" / "NORMAL"
    mac.mkdir(parents=True)
    (mac / "._IM-0001-0001.jpeg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    return top


def expected_counts() -> dict:
    out = {}
    for split, cls, _, _ in GOOD + [("train", "PNEUMONIA", None, None)]:  # + the byte copy
        out.setdefault(split, {"NORMAL": 0, "PNEUMONIA": 0})[cls] += 1
    return out


def _counts(splits) -> int:
    return len(splits.train) + len(splits.val) + len(splits.test)


def test_folder_with_archive_quirks_counts_true_images_and_reports_each_broken_file(tmp_path, data_cfg):
    top = write_kaggle_tree(tmp_path / "download")
    for root in (top, top / "chest_xray"):  # the archive's top folder or the real root
        splits = load(data_cfg(source="folder", root=str(root)), image_size=32, progress=False)
        assert splits.root == str((top / "chest_xray").resolve())
        assert _counts(splits) == sum(sum(c.values()) for c in expected_counts().values())
        reasons = dict(splits.skipped)
        assert set(reasons) == set(BROKEN)
        assert "empty" in reasons["train/PNEUMONIA/person90_bacteria_1.jpeg"]
        assert "corrupt" in reasons["train/PNEUMONIA/person91_bacteria_2.jpeg"]
        assert "not an image" in reasons["train/PNEUMONIA/person92_virus_3.jpeg"]
        assert "not an image file name" in reasons["train/NORMAL/notes.txt"]
        everything = np.concatenate([splits.train.paths, splits.val.paths, splits.test.paths])
        assert not any("__MACOSX" in p or "/." in p or "chest_xray" in p for p in everything)
        assert any(p.startswith("val/") for p in np.concatenate([splits.train.paths, splits.val.paths]))


def test_kaggle_val_is_used_as_is_when_not_folded(tmp_path, data_cfg):
    root = write_kaggle_tree(tmp_path / "d", broken=False)
    splits = load(data_cfg(source="folder", root=str(root), fold_kaggle_val=False), image_size=32, progress=False)
    assert splits.val.paths.tolist() == ["val/NORMAL/NORMAL2-IM-1427-0001.jpeg", "val/PNEUMONIA/person1946_bacteria_4874.jpeg"]
    assert all(p.startswith("train/") for p in splits.train.paths)


def test_a_copy_of_a_test_image_in_train_is_dropped_and_reported(tmp_path, data_cfg):
    root = write_kaggle_tree(tmp_path / "d", broken=False) / "chest_xray"
    leak = root / "train" / "NORMAL" / "IM-0500-0001.jpeg"
    leak.write_bytes((root / "test" / "NORMAL" / "IM-0020-0001.jpeg").read_bytes())
    splits = load(data_cfg(source="folder", root=str(root)), image_size=32, progress=False)
    assert "train/NORMAL/IM-0500-0001.jpeg" not in set(splits.train.paths) | set(splits.val.paths)
    assert "test/NORMAL/IM-0020-0001.jpeg" in splits.test.paths
    assert "test/" in dict(splits.skipped)["train/NORMAL/IM-0500-0001.jpeg"]


def _tree(root: Path, spec: dict) -> Path:
    for rel, n in spec.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            (root / rel / f"IM-{k:04d}-0001.jpeg").write_bytes(_image_bytes(k, "gray"))
    return root


@pytest.mark.parametrize(
    "spec, message",
    [
        (None, "does not exist"),
        ({"train": 0}, "no class folders"),
        ({"train/NORMAL": 0, "train/PNEUMONIA": 2}, "has no images"),
        ({"train/NORMAL": 2}, "PNEUMONIA is missing"),
        ({"train/NORMAL": 2, "train/PNEUMONIA": 2, "train/COVID": 1}, "COVID"),
        ({"images": 3}, "no train/ folder"),
    ],
)
def test_unusable_layouts_raise_one_clear_error_naming_the_path(tmp_path, data_cfg, spec, message):
    root = tmp_path / "data"
    if spec is not None:
        _tree(root, spec)
    with pytest.raises(DataError, match=message) as err:
        load(data_cfg(source="folder", root=str(root)), image_size=32, progress=False)
    assert str(root) in str(err.value)


def test_a_class_with_only_broken_files_is_an_error(tmp_path, data_cfg):
    root = _tree(tmp_path / "d", {"train/NORMAL": 0, "train/PNEUMONIA": 8})
    (root / "train/NORMAL/IM-0001-0001.jpeg").write_bytes(b"")
    with pytest.raises(DataError, match=r"train/NORMAL has no readable images"):
        load(data_cfg(source="folder", root=str(root)), image_size=32, progress=False)


def zip_dir(top: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:  # deflated, as Kaggle's archives are
        for p in sorted(top.rglob("*")):
            zf.write(p, p.relative_to(top).as_posix())
    return archive


# The Kaggle client is faked by a stand-in package (tests/fake_kaggle/kaggle): the network is
# the only thing faked; pneumo's own download, checks and extraction run for real.
FAKE_KAGGLE = Path(__file__).parent / "fake_kaggle"
KAGGLE_USER, KAGGLE_KEY = "kaggle-user-7f3a9c", "kagglekey0d1e2f3a4b5c6d7e8f90"
DATASET = "paultimothymooney/chest-xray-pneumonia"


def fake_kaggle_env(archive: Path, calls: Path | None = None, fault: str = "") -> dict:
    """Variables that make `import kaggle` the fake in a child process, with credentials set."""
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(FAKE_KAGGLE), os.environ.get("PYTHONPATH")) if p),
            "FAKE_KAGGLE_ZIP": str(archive), "FAKE_KAGGLE_CALLS": str(calls or archive.with_suffix(".calls")),
            "FAKE_KAGGLE_FAULT": fault, "KAGGLE_USERNAME": KAGGLE_USER, "KAGGLE_KEY": KAGGLE_KEY}


@pytest.fixture(scope="module")
def kaggle_zip(tmp_path_factory) -> Path:
    """The archive Kaggle hands out: the real one's shape and quirks, tiny."""
    top = tmp_path_factory.mktemp("kaggle-src")
    return zip_dir(write_kaggle_tree(top / "src"), top / "chest-xray-pneumonia.zip")


@pytest.fixture
def fake_download(tmp_path, monkeypatch, kaggle_zip):
    """The fake Kaggle client in this process; returns a function listing the datasets downloaded so far."""
    calls = tmp_path / "kaggle-calls.txt"
    for name, value in fake_kaggle_env(kaggle_zip, calls).items():
        if name != "PYTHONPATH":
            monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("kaggle", FAKE_KAGGLE / "kaggle" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "kaggle", module)  # what `import kaggle` finds, until the test ends
    return lambda: calls.read_text().split() if calls.exists() else []


def test_kaggle_downloads_once_extracts_and_finds_the_root(tmp_path, data_cfg, fake_download):
    cfg = data_cfg(source="kaggle", root=str(tmp_path / "kaggle"))
    splits = load(cfg, image_size=32, progress=False)
    assert fake_download() == [DATASET]
    assert splits.root == str((tmp_path / "kaggle" / "extracted" / "chest_xray").resolve())
    assert _counts(splits) == sum(sum(c.values()) for c in expected_counts().values())
    assert set(dict(splits.skipped)) == set(BROKEN)
    again = load(cfg, image_size=32, progress=False)
    assert fake_download() == [DATASET] and again.digest == splits.digest


DOWNLOAD_FAULTS = {  # fault: (what the message says happened, what it says to do)
    "auth": ("refused the credentials (HTTP 401)", "Create New Token"),
    "forbidden": ("denied access", "accept the dataset's terms"),
    "network": ("could not reach Kaggle", "check the network"),
    "not_found": ("no dataset paultimothymooney/chest-xray-pneumonia (HTTP 404)", "check data.dataset"),
    "no_file": ("wrote no chest-xray-pneumonia.zip", "check that data.dataset"),
    "corrupt": ("is not a valid zip", "run the download again"),
    "damaged": ("is not a valid zip", "run the download again"),
}


def download(dest: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pneumo", "data", "download", "--dest", str(dest)],
                          env=clean_env(env), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("fault", sorted(DOWNLOAD_FAULTS))
def test_a_failed_download_says_what_to_do_and_leaves_nothing_behind(tmp_path, kaggle_zip, fault):
    dest, calls = tmp_path / "kaggle", tmp_path / "calls.txt"
    proc = download(dest, fake_kaggle_env(kaggle_zip, calls, fault))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pneumo data: error: "), proc.stderr
    happened, todo = DOWNLOAD_FAULTS[fault]
    assert happened in lines[0] and todo in lines[0], lines[0]
    assert KAGGLE_USER not in proc.stderr and KAGGLE_KEY not in proc.stderr
    assert calls.read_text().split() == [DATASET]
    # Nothing half-downloaded or half-extracted: only the lock file; a damaged archive is removed.
    assert sorted(os.listdir(dest)) == [".lock"]
    # ... so the next try starts clean and, the fault gone, downloads again and extracts.
    retry = download(dest, fake_kaggle_env(kaggle_zip, calls))
    assert retry.returncode == 0, retry.stderr[-3000:]
    assert calls.read_text().split() == [DATASET, DATASET]
    assert (dest / "extracted" / "chest_xray" / "train" / "NORMAL").is_dir()
    assert sorted(os.listdir(dest)) == [".lock", "extracted"]


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "chest_xray/../../evil.txt"])
def test_kaggle_refuses_archive_members_that_escape_the_target(tmp_path, member):
    archive = tmp_path / "dl" / "chest-xray-pneumonia.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("chest_xray/train/NORMAL/IM-0001-0001.jpeg", _image_bytes(0, "gray"))
        zf.writestr(member, "pwned")
    with pytest.raises(DataError, match="refused") as err:
        kaggle_source.ensure(tmp_path / "dl", "paultimothymooney/chest-xray-pneumonia", progress=False)
    assert member in str(err.value)
    assert not list(tmp_path.rglob("evil.txt")) and not (tmp_path / "dl" / "extracted").exists()


def test_missing_kaggle_credentials_say_where_they_go_without_leaking_values(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("KAGGLE_KEY", "KAGGLE_API_TOKEN", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", "secret-user-7f3a")  # half a credential is still none
    with pytest.raises(DataError) as err:
        kaggle_source.ensure(tmp_path / "k", "paultimothymooney/chest-xray-pneumonia", progress=False)
    message = str(err.value)
    for needed in ("kaggle.json", "KAGGLE_CONFIG_DIR", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        assert needed in message
    assert "secret-user-7f3a" not in message


@pytest.mark.parametrize("option", ["synthetic", "folder", "kaggle"])
def test_every_data_option_of_the_real_conf_loads(option, tmp_path, monkeypatch, fake_download):
    from hydra import compose, initialize_config_dir

    from pneumo.config import paths, schema

    schema.register()
    extra = {"synthetic": ["data.n_images=30", "data.image_px=32"], "kaggle": [],
             "folder": [f"data.root={write_kaggle_tree(tmp_path / 'f')}"]}[option]
    with initialize_config_dir(config_dir=str(paths.CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"data={option}", f"paths.cache={tmp_path / 'cache'}", *extra])
    splits = load(cfg.data, image_size=32, progress=False)
    assert len(splits.train) and len(splits.val) and len(splits.test)
    assert Path(splits.root).is_relative_to(tmp_path)


def test_folder_option_without_root_says_to_set_it(tmp_path):
    from hydra import compose, initialize_config_dir

    from pneumo.config import paths, schema

    schema.register()
    with initialize_config_dir(config_dir=str(paths.CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["data=folder", f"paths.cache={tmp_path}"])
    with pytest.raises(DataError, match="data.root"):
        load(cfg.data, image_size=32, progress=False)
