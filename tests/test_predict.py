"""`pneumo predict` on a real folder: every file gets a row, a bad file is reported with its reason, not fatal.

Runs the installed app as a subprocess against the smoke sweep's champion (real MLflow
registry, real Keras model). The missing-model case needs no trained model.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from pneumo.record import names

from helpers import client_for, empty_store, run_pneumo, tracking_uri
from store_fixture import smoke_jpegs, smoke_store  # noqa: F401

CLASSES = {"NORMAL", "PNEUMONIA"}


def _predict(args: list[str], store: Path, cwd: Path):
    return run_pneumo(["predict", *args], cwd, hydra=False, check=False,
                      env_extra={"MLFLOW_TRACKING_URI": tracking_uri(store)})


@pytest.fixture
def mixed_folder(smoke_store, tmp_path) -> tuple[Path, dict[str, str | None]]:
    """A folder of good and broken files; maps each expected path to None (good) or a reason fragment (bad)."""
    from PIL import Image

    root = tmp_path / "films"
    (root / "ward-b").mkdir(parents=True)
    expected: dict[str, str | None] = {}
    jpegs = smoke_jpegs(smoke_store, 3)
    for i, src in enumerate(jpegs):
        dst = (root if i < 2 else root / "ward-b") / f"good-{i}.jpeg"  # folders are searched recursively
        shutil.copy(src, dst)
        expected[str(dst)] = None
    Image.open(jpegs[0]).save(root / "as-png.png")  # PNG, gray
    expected[str(root / "as-png.png")] = None
    big = Image.open(jpegs[1]).convert("RGB").resize((2400, 2000))  # a full-size colour film
    big.save(root / "BIG_RGB.JPG", quality=85)  # the suffix is matched case-insensitively
    expected[str(root / "BIG_RGB.JPG")] = None
    (root / "zero.jpeg").write_bytes(b"")
    expected[str(root / "zero.jpeg")] = "empty"
    (root / "x.jpeg").write_text("patient notes, not a radiograph\n")
    expected[str(root / "x.jpeg")] = "not an image"
    truncated = jpegs[2].read_bytes()
    (root / "truncated.jpeg").write_bytes(truncated[: len(truncated) // 3])
    expected[str(root / "truncated.jpeg")] = "corrupt"
    # Not image files: never listed (a .txt, macOS resource forks).
    (root / "readme.txt").write_text("not an image suffix")
    (root / "._good-0.jpeg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    return root, expected


@pytest.mark.slow
def test_predict_lists_every_file_classifies_the_good_and_explains_the_bad(smoke_store, mixed_folder, tmp_path):
    root, expected = mixed_folder
    missing = tmp_path / "not-there.jpeg"  # named on the command line but absent: a row, not a crash
    expected[str(missing)] = "unreadable"

    proc = _predict([str(root), str(missing), "--format", "json"], smoke_store, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = json.loads(proc.stdout)
    assert [r["path"] for r in rows] == sorted((p for p in expected if p != str(missing)),
                                               key=lambda p: Path(p).relative_to(root).parts) + [str(missing)]
    by_path = {r["path"]: r for r in rows}
    assert by_path.keys() == expected.keys()
    for path, reason in expected.items():
        r = by_path[path]
        assert set(r) == {"path", "probability", "label", "error", names.OOD_COLUMN, names.OOD_FLAG_COLUMN}
        if reason is None:  # a class, or the guard's word on a film a toy model never saw the like of
            assert r["error"] == "" and r["label"] in (*CLASSES, names.LABEL_OOD, names.LABEL_REFER), r
            assert 0.0 <= r["probability"] <= 1.0, r
        else:
            assert r["probability"] is None and r["label"] == "", r
            assert reason in r["error"], r
    n_bad = sum(1 for reason in expected.values() if reason)
    assert f"{n_bad} of {len(expected)} file(s) could not be classified" in proc.stderr

    csv_proc = _predict([str(root), str(missing), "--format", "csv"], smoke_store, tmp_path)
    assert csv_proc.returncode == 0, csv_proc.stderr[-4000:]
    table = list(csv.DictReader(io.StringIO(csv_proc.stdout)))
    assert [t["path"] for t in table] == [r["path"] for r in rows]
    for t, r in zip(table, rows):
        assert t["label"] == r["label"] and t["error"] == r["error"]
        assert (t["probability"] == "") if r["probability"] is None else float(t["probability"]) == pytest.approx(
            r["probability"], abs=1e-6)


@pytest.mark.slow
def test_predict_exits_1_when_no_file_could_be_classified(smoke_store, tmp_path):
    (tmp_path / "zero.jpeg").write_bytes(b"")
    (tmp_path / "x.png").write_text("text")
    proc = _predict([str(tmp_path / "zero.jpeg"), str(tmp_path / "x.png"), "--format", "json"], smoke_store, tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert [r["label"] for r in json.loads(proc.stdout)] == ["", ""]
    assert "2 of 2 file(s) could not be classified" in proc.stderr


def test_missing_model_is_a_clear_message_and_exit_2(tmp_path):
    from PIL import Image

    Image.new("L", (64, 64), 90).save(tmp_path / "film.jpeg")
    store = tmp_path / "empty-store"
    empty_store(store / "mlruns")  # a store with no model in it (one with no store: tests/test_store.py)
    proc = _predict([str(tmp_path / "film.jpeg")], store, tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "cannot load models:/pneumonia-classifier@champion" in proc.stderr
    assert "not found" in proc.stderr and "pneumo promote" in proc.stderr  # what is wrong and what to do
    assert "Traceback" not in proc.stderr and proc.stdout == ""

    proc = _predict([str(tmp_path / "film.jpeg"), "--model", "models:/pneumonia-classifier/7"], store, tmp_path)
    assert proc.returncode == 2 and "cannot load models:/pneumonia-classifier/7" in proc.stderr


def test_no_image_files_is_exit_2(tmp_path):
    (tmp_path / "notes.txt").write_text("no films here")
    (tmp_path / "store" / "mlruns").mkdir(parents=True)
    proc = _predict([str(tmp_path)], tmp_path / "store", tmp_path)
    assert proc.returncode == 2
    assert "no JPEG/PNG files found" in proc.stderr


@pytest.mark.slow
def test_predict_explain_writes_one_overlay_per_classified_file(smoke_store, mixed_folder, tmp_path):
    from PIL import Image

    root, expected = mixed_folder
    out = tmp_path / "why"
    proc = _predict([str(root), "--explain", str(out), "--format", "json"], smoke_store, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = json.loads(proc.stdout)
    assert {r["path"] for r in rows} == set(expected)
    for r in rows:
        if expected[r["path"]] is None:  # classified (the 2400 x 2000 RGB film too): its PNG, beside its row
            png = Path(r["explanation"])
            assert png.parent == out and png.stem == Path(r["path"]).stem, r
            with Image.open(png) as im:
                assert im.format == "PNG" and min(im.size) > 300
        else:
            assert r["explanation"] == "", r
    assert len(list(out.glob("*.png"))) == sum(reason is None for reason in expected.values())
    csv_rows = list(csv.DictReader(io.StringIO(_predict([str(root), "--explain", str(tmp_path / "again"),
                                                         "--format", "csv"], smoke_store, tmp_path).stdout)))
    assert [Path(r["explanation"]).name for r in csv_rows] == [Path(r["explanation"]).name for r in rows]


@pytest.mark.slow
def test_piped_output_is_json_and_each_label_is_the_served_threshold(smoke_store, tmp_path):
    """No --format and stdout a pipe (as here): JSON, one object a file with the columns. Each label is the
    served model's own threshold applied to the probability (>= threshold: PNEUMONIA), but where the served
    model says otherwise by design: a film its guard flags, a probability inside its referral band."""
    import mlflow

    from pneumo.record import names
    from pneumo.release.predict import COLUMNS

    files = smoke_jpegs(smoke_store, 12)
    proc = _predict([str(f) for f in files], smoke_store, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)  # not a table: a program reads it
    assert [r["path"] for r in rows] == [str(f) for f in files]
    assert all(list(r) == list(COLUMNS) and r["error"] == "" for r in rows), rows
    version = client_for(smoke_store).get_model_version_by_alias(names.MODEL_NAME, names.CHAMPION)  # and the URI
    served = mlflow.pyfunc.load_model(f"models:/{names.MODEL_NAME}@{names.CHAMPION}").unwrap_python_model()
    assert served.threshold == float(version.tags[names.THRESHOLD])  # the job's validation-chosen cut
    by_cut = []
    for r in rows:
        p = r["probability"]
        if r[names.OOD_FLAG_COLUMN]:
            assert r["label"] == names.LABEL_OOD, r
        elif served.band is not None and served.band[0] < p < served.band[1]:
            assert r["label"] == names.LABEL_REFER, r
        elif abs(p - served.threshold) > 1e-6:  # printed to 6 decimals: no verdict at the cut itself
            assert r["label"] == ("PNEUMONIA" if p >= served.threshold else "NORMAL"), (r, served.threshold)
            by_cut.append(r["label"])
    assert set(by_cut) == CLASSES, rows  # both sides of the cut are exercised
