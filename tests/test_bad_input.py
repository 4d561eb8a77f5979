"""Broken data and broken configs, tried for real: one clear message naming the file or key,
no bare traceback, nothing in the MLflow store changed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumo.data import imaging

from helpers import clean_env, empty_store, run_pneumo


def jpeg(a: np.ndarray, mode: str = "L", fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).convert(mode).save(buf, fmt)
    return buf.getvalue()


def film(seed=0, size=48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(120, 30, (size, size))).clip(0, 255).astype(np.uint8)


def declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (only its header is true)."""
    png = bytearray(jpeg(film(), "L", "PNG"))
    ihdr = png.index(b"IHDR")
    png[ihdr + 4: ihdr + 12] = struct.pack(">II", width, height)
    png[ihdr + 17: ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(png[ihdr: ihdr + 17])))
    return bytes(png)


def bomb_png() -> bytes:
    """A tiny PNG whose header claims 30,000 x 30,000 pixels."""
    return declaring(30000, 30000)


def png16() -> bytes:
    a = (film().astype(np.uint16) * 257)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")  # uint16 -> a 16-bit gray PNG
    return buf.getvalue()


# name -> (bytes, None when it must be decoded, else a phrase of the reason it is skipped)
MATRIX = {
    "person1_bacteria_1.jpeg": (b"", "empty"),
    "person2_bacteria_2.jpeg": (jpeg(film())[:300], "corrupt"),
    "person3_bacteria_3.jpeg": (b"<!DOCTYPE html><html><body>Access denied</body></html>", "not an image"),
    "person4_bacteria_4.jpeg": (jpeg(film(4), "CMYK"), None),
    "person5_bacteria_5.png": (png16(), None),
    "person6_bacteria_6.png": (jpeg(film(6), "RGBA", "PNG"), None),
    "person7_bacteria_7.png": (jpeg(np.zeros((1, 1), np.uint8), "L", "PNG"), "too small"),
    "person8_bacteria_8.png": (jpeg(np.zeros((40, 20000), np.uint8), "L", "PNG"), "aspect ratio"),
    "person9_bacteria_9.png": (bomb_png(), "decompression bomb"),
}


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_each_bad_image_is_decoded_right_or_refused_with_its_reason(name, tmp_path):
    data, reason = MATRIX[name]
    path = tmp_path / name
    path.write_bytes(data)
    if reason is None:
        a = imaging.decode(path, 32)
        assert a.shape == (32, 32) and a.dtype == np.uint8 and 40 < a.mean() < 200  # not garbage, not clipped
    else:
        with pytest.raises(imaging.ImageError, match=reason):
            imaging.decode(path, 32)


def kaggle_tree(top: Path) -> Path:
    seed = 100
    for split, group in (("train", 1), ("test", 5)):
        for cls, stem in (("NORMAL", "IM-00{0}{1}-0001"), ("PNEUMONIA", "person{0}{1}_virus_1")):
            d = top / split / cls
            d.mkdir(parents=True)
            for i in range(6):
                seed += 1  # every file distinct: no accidental duplicate groups
                (d / (stem.format(group, i) + ".jpeg")).write_bytes(jpeg(film(seed)))
    bad = top / "train" / "PNEUMONIA"
    for name, (data, _) in MATRIX.items():
        (bad / name).write_bytes(data)
    os.symlink("loop_b.jpeg", bad / "loop_a.jpeg")  # a symlink loop
    os.symlink("loop_a.jpeg", bad / "loop_b.jpeg")
    os.symlink("..", bad / "parent")  # a directory loop
    os.mkfifo(bad / "fifo.jpeg")  # hashing it would wait for a writer for ever
    os.symlink("/dev/zero", bad / "zeros.jpeg")  # ... and this one would never end
    (bad / "locked.jpeg").write_bytes(jpeg(film(11)))
    (bad / "locked.jpeg").chmod(0)
    os.close(os.open(os.fsencode(bad) + b"/person70_virus_\xff\xfe.jpeg", os.O_CREAT | os.O_WRONLY, 0o644))
    Path(os.fsdecode(os.fsencode(bad) + b"/person70_virus_\xff\xfe.jpeg")).write_bytes(jpeg(film(70)))
    return top


def test_inspect_reports_every_broken_file_and_counts_the_rest(tmp_path):
    root = kaggle_tree(tmp_path / "xray")
    proc = subprocess.run([sys.executable, "-m", "pneumo", "data", "inspect", str(root), "--json", "--size", "32",
                           "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True, timeout=300,
                          env=clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    skipped = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    for name, (_, reason) in MATRIX.items():
        if reason:
            assert name in skipped, (name, skipped)
    assert "loop_a.jpeg" in skipped and "loop_b.jpeg" in skipped
    assert "FIFO" in skipped["fifo.jpeg"] and "character device" in skipped["zeros.jpeg"], skipped
    good_extra = 3 + 1 + (0 if os.geteuid() != 0 else 1)  # CMYK, 16-bit, RGBA, non-UTF-8 name (+ locked, as root)
    assert report["splits"]["train"]["PNEUMONIA"] == 6 + good_extra
    assert report["splits"]["train"]["NORMAL"] == 6
    # the table view copes with the same tree (and the non-UTF-8 name)
    table = subprocess.run([sys.executable, "-m", "pneumo", "data", "inspect", str(root), "--size", "32",
                            "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True, timeout=300,
                           env=clean_env())
    assert table.returncode == 0 and "Traceback" not in table.stderr, table.stderr[-2000:]


def test_a_file_the_user_cannot_read_is_reported_not_fatal():
    """Root reads any file, so as root the check runs in a forked child that drops to `nobody`."""
    import tempfile

    from pneumo.commands.data import report

    top = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        root = kaggle_tree(top / "xray")
        cache = top / "cache"
        cache.mkdir()
        for d in [top, cache, *root.rglob("*")]:
            if d.is_dir() and not d.is_symlink():
                d.chmod(0o777)
        report(str(root), 32, 0, str(top / "warm"), workers=1, progress=False)  # imports done before the fork
        shutil.rmtree(top / "warm")
        if os.geteuid() != 0:
            out, _ = report(str(root), 32, 0, str(cache), workers=1, progress=False)
        else:
            out = _as_nobody(lambda: report(str(root), 32, 0, str(cache), workers=1, progress=False)[0])
        skipped = {Path(s["path"]).name: s["reason"] for s in out["skipped"]}
        assert "locked.jpeg" in skipped and "ermission" in skipped["locked.jpeg"], skipped
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _as_nobody(fn):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        try:
            os.setgid(65534)
            os.setuid(65534)
            payload = json.dumps(fn())
        except BaseException as e:  # noqa: BLE001
            payload = json.dumps({"error": repr(e)})
        with os.fdopen(w, "w") as f:
            f.write(payload)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    out = json.loads(data)
    assert "error" not in out, out
    return out


# -- files that are not films: refused from their stat, unopened ------------------------------


def special_files(folder: Path) -> dict[str, str]:
    """Files in folder that are no film to read, each named like one; {name: a phrase of the reason}.
    A FIFO (opening it waits for a writer for ever), links to a character device that never ends and
    to a socket, a 12 GB sparse file (no disk used), a folder named like a film."""
    import atexit
    import socket
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo.jpeg")
    os.symlink("/dev/zero", folder / "zeros.jpeg")
    sockets = Path(tempfile.mkdtemp(dir="/tmp", prefix="sock"))  # a socket's path must stay under 108 bytes
    atexit.register(shutil.rmtree, sockets, True)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sockets / "s"))  # the socket file stays after close
    os.symlink(sockets / "s", folder / "socket.png")
    with open(folder / "huge.jpeg", "wb") as f:
        f.truncate(12 * 2**30)
    (folder / "folder.jpeg").mkdir()
    return {"fifo.jpeg": "not a regular file (a FIFO)", "zeros.jpeg": "not a regular file (a character device)",
            "socket.png": "not a regular file (a socket)", "huge.jpeg": "too large: 12,288 MB",
            "folder.jpeg": "not a regular file (a folder)"}


class _Hung(Exception):
    pass


def _alarm(*_):
    raise _Hung("blocked: a file that should have been refused from its stat was opened")


def test_files_that_are_not_films_are_refused_unopened(tmp_path):
    import signal

    kinds = special_files(tmp_path / "in")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(20)  # opening the FIFO (or reading /dev/zero whole) would block: fail instead of hanging
    try:
        for name, reason in kinds.items():
            with pytest.raises(imaging.ImageError, match=re.escape(reason)):
                imaging.read(tmp_path / "in" / name)
            with pytest.raises(imaging.ImageError, match=re.escape(reason)):  # the training decode too
                imaging.decode(tmp_path / "in" / name, 32)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_the_file_size_cap_lets_a_file_at_its_line_through_and_no_byte_more(tmp_path):
    at, over = tmp_path / "at.jpeg", tmp_path / "over.jpeg"
    at.write_bytes(b"\xff" * 2**20)
    over.write_bytes(b"\xff" * (2**20 + 1))
    assert len(imaging.read(at, max_mb=1)) == 2**20
    with pytest.raises(imaging.ImageError, match="too large: 1 MB, over the limit of 1 MB a file"):  # from its stat
        imaging.read(over, max_mb=1)
    for path, size in ((at, imaging.MAX_FILE_MB * 2**20), (over, imaging.MAX_FILE_MB * 2**20 + 1)):
        with open(path, "wb") as f:  # the default line, in sparse files
            f.truncate(size)
    assert len(imaging.read(at)) == imaging.MAX_FILE_MB * 2**20
    with pytest.raises(imaging.ImageError, match=f"too large: {imaging.MAX_FILE_MB} MB, over the limit of "
                                                 f"{imaging.MAX_FILE_MB} MB a file"):
        imaging.read(over)


def test_header_pixels_reads_the_declared_size_and_counts_nothing_decode_refuses_unread():
    side = 10_000
    assert imaging.MAX_PIXELS % side == 0
    at = declaring(side, imaging.MAX_PIXELS // side)
    assert imaging.header_pixels(at) == imaging.MAX_PIXELS
    assert imaging.header_pixels(declaring(side, imaging.MAX_PIXELS // side + 1)) == 0  # refused in its own row
    assert imaging.header_pixels(b"<html>not an image</html>") == 0


# -- broken data and configs through `pneumo train`: the store is left byte for byte ---------


def store_snapshot(store: Path) -> dict:
    """Everything the store holds: the database as SQL and every other file's bytes (by path)."""
    con = sqlite3.connect(store / "mlflow.db")
    try:
        dump = "\n".join(con.iterdump())
    finally:
        con.close()
    files = {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(store.rglob("*")) if p.is_file() and p.name != "mlflow.db"}
    return {"mlflow.db as SQL": dump, "files": files}


@pytest.fixture(scope="module")
def filled_store(tmp_path_factory):
    """A store with a job run and an artifact in it, as after a sweep."""
    import mlflow

    tmp = tmp_path_factory.mktemp("store")
    store = tmp / "mlruns"
    mlflow.set_tracking_uri(empty_store(store))
    exp = mlflow.create_experiment("pneumo", artifact_location=(store / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp, run_name="model=cnn"):
        mlflow.log_params({"model._target_": "pneumo.model.builders.cnn"})
        mlflow.log_metrics({"test_auc": 0.9})
        mlflow.log_text("kept", "evaluation/report.txt")
    mlflow.set_tracking_uri(None)
    return tmp


def refused(proc, message: str) -> str:
    """The job failed with one `pneumo:` line holding message, no traceback; returns that line."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("pneumo: ")]
    assert len(lines) == 1 and message in lines[0], proc.stderr[-3000:]
    return lines[0]


# A new experiment name each time: a job that got as far as the store would create it.
FRESH = "experiment=never-created"


@pytest.mark.slow
@pytest.mark.ci
def test_training_on_a_class_whose_files_are_all_broken_is_refused_and_the_store_left_alone(tmp_path, filled_store):
    root = kaggle_tree(tmp_path / "xray")  # PNEUMONIA: good images among every broken kind above
    normal = root / "train" / "NORMAL"
    broken = [data for data, reason in MATRIX.values() if reason]
    for i, f in enumerate(sorted(normal.iterdir())):  # NORMAL: every file broken, one way or another
        f.write_bytes(broken[i % len(broken)])
    before = store_snapshot(filled_store / "mlruns")
    proc = run_pneumo(["train", "data=folder", f"data.root={root}", FRESH], filled_store, check=False, timeout=300)
    refused(proc, f"{normal} has no readable images: see the skipped files with `pneumo data inspect {root}`")
    assert store_snapshot(filled_store / "mlruns") == before


# (overrides, what the message says, exit status: 2 for a config error, 1 for data that cannot be read)
BAD_CONFIGS = [
    (["model=vgg99"], "vgg99", 2),
    (["trainer.epoch=3"], "trainer.epoch", 2),
    (["+trainer.epoch=3"], "trainer.epoch", 2),
    (["trainer.epochs=ten"], "trainer.epochs", 2),
    (["model.blocks={int:[4,2]}"], "model.blocks: int range has min 4 > max 2", 2),
    (["model.dense_units={choice:[]}"], "model.dense_units: choice needs a non-empty list", 2),
    (["trainer.image_size=0"], "trainer.image_size: 0 is out of range; use an integer from 16 to 1024", 2),
    (["trainer.batch_size=0"], "trainer.batch_size: 0 is out of range; use an integer >= 1", 2),
    (["trainer.epochs=-1", "tuner.max_trials=1"], "trainer.epochs: -1 is out of range; use an integer >= 1", 2),
    (["optimizer.learning_rate=inf"], "optimizer.learning_rate: inf is out of range; use a number > 0", 2),
    (["model.blocks=12"], "the default hyperparameters do not build a model", 2),  # found by building it
    (["data=folder", "data.root=/nonexistent/chest_xray"], "/nonexistent/chest_xray", 1),
]


@pytest.mark.slow
@pytest.mark.parametrize("overrides, message, code", BAD_CONFIGS, ids=[" ".join(o) for o, _, _ in BAD_CONFIGS])
@pytest.mark.ci
def test_bad_config_fails_clearly_and_leaves_the_store_alone(overrides, message, code, filled_store):
    before = store_snapshot(filled_store / "mlruns")
    proc = run_pneumo(["train", *overrides, FRESH], filled_store, check=False, timeout=300)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert store_snapshot(filled_store / "mlruns") == before
