"""`pneumo predict` on a real folder: every file gets a row, a bad file is reported with its reason, not fatal;
a file that is no film to read (a FIFO, a device, 12 GB) is refused unopened; memory holds one group of
files at a time, however many there are.

Runs the installed app as a subprocess against the smoke sweep's champion (real MLflow
registry, real Keras model). The missing-model and missing-path cases need no trained model.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from test_bad_input import special_files

from pneumo.record import names

import toy_model
from helpers import clean_env, client_for, empty_store, run_pneumo, tracking_uri
from store_fixture import smoke_jpegs, smoke_store  # noqa: F401

CLASSES = {"NORMAL", "PNEUMONIA"}


def _predict(args: list[str], store: Path, cwd: Path, timeout: float = 900):
    return run_pneumo(["predict", *args], cwd, hydra=False, check=False, timeout=timeout,
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
    dangling = tmp_path / "moved.jpeg"  # named on the command line: a link whose film is gone is a row
    dangling.symlink_to(tmp_path / "gone.jpeg")
    expected[str(dangling)] = "unreadable: No such file"

    proc = _predict([str(root), str(dangling), "--format", "json"], smoke_store, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = json.loads(proc.stdout)
    assert [r["path"] for r in rows] == sorted((p for p in expected if p != str(dangling)),
                                               key=lambda p: Path(p).relative_to(root).parts) + [str(dangling)]
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

    csv_proc = _predict([str(root), str(dangling), "--format", "csv"], smoke_store, tmp_path)
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


def test_a_path_that_does_not_exist_is_exit_2_naming_it(tmp_path):
    """A typo in a path is a usage error, named before any model is loaded: not one more unreadable row."""
    from PIL import Image

    Image.new("L", (64, 64), 90).save(tmp_path / "film.jpeg")
    (tmp_path / "store" / "mlruns").mkdir(parents=True)
    for args, named in (([tmp_path / "scans"], "scans"),
                        ([tmp_path / "film.jpeg", tmp_path / "flim.jpeg"], "flim.jpeg")):
        proc = _predict([str(a) for a in args], tmp_path / "store", tmp_path)
        assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
        assert proc.stderr.startswith("pneumo predict: error: ") and f"{tmp_path / named}: no such file or folder" \
            in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert proc.stdout == "" and "cannot load" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_files_that_are_no_film_are_rows_unopened_and_the_films_still_come_out(smoke_store, tmp_path, fmt):
    """Before: the FIFO hung the batch for ever, the 12 GB file or /dev/zero ended it in a MemoryError with no
    row for anyone. Now each is one row naming why, and the films beside them are classified (exit 0)."""
    root = tmp_path / "films"
    refused = special_files(root)
    films = smoke_jpegs(smoke_store, 2)
    for f in films:
        shutil.copy(f, root / f.name)
    proc = _predict([str(root), "--format", fmt], smoke_store, tmp_path, timeout=300)  # the FIFO: no hang
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"{len(refused)} of {len(refused) + len(films)} file(s) could not be classified" in proc.stderr
    if fmt == "table":  # one line a row, wide enough when piped (output.write): the name, then its reason
        lines = proc.stdout.splitlines()
        for name, reason in refused.items():
            assert any(name in line and reason.split(" (")[0] in line for line in lines), (name, proc.stdout)
        for f in films:
            assert any(f.name in line and ("NORMAL" in line or "PNEUMONIA" in line or names.LABEL_OOD in line
                                           or names.LABEL_REFER in line) for line in lines), proc.stdout
        return
    rows = json.loads(proc.stdout) if fmt == "json" else list(csv.DictReader(io.StringIO(proc.stdout)))
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name.keys() == set(refused) | {f.name for f in films}
    for name, reason in refused.items():
        assert reason in by_name[name]["error"] and by_name[name]["label"] == "", by_name[name]
    for f in films:
        assert by_name[f.name]["error"] == "" and by_name[f.name]["label"], by_name[f.name]


@pytest.mark.slow
def test_max_file_mb_moves_the_line_for_this_run(smoke_store, tmp_path):
    film = smoke_jpegs(smoke_store, 1)[0]
    kb = film.stat().st_size / 1024
    for cap, refused in ((kb / 1024 * 1.01, False), (kb / 1024 * 0.99, True)):
        proc = _predict([str(film), "--format", "json", "--max-file-mb", f"{cap:.6f}"], smoke_store, tmp_path)
        (row,) = json.loads(proc.stdout)
        assert ("over the limit of" in row["error"]) is refused, row
        assert proc.returncode == (1 if refused else 0), proc.stderr[-3000:]
    proc = _predict([str(film), "--max-file-mb", "0"], smoke_store, tmp_path)
    assert proc.returncode == 2 and "--max-file-mb" in proc.stderr and "positive" in proc.stderr


def _peak_rss_mb(args: list[str], store: Path, cwd: Path) -> float:
    """Peak resident memory of one fresh `pneumo predict ARGS` process, in MB (the kernel's ru_maxrss)."""
    import os
    import subprocess
    import sys

    env = clean_env({"MLFLOW_TRACKING_URI": tracking_uri(store)})
    with open(cwd / "out.json", "w") as out, open(cwd / "err.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pneumo", "predict", *args, "--format", "json"], cwd=cwd,
                                env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, (cwd / "err.txt").read_text()[-3000:]
    return usage.ru_maxrss / 1024


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_files(smoke_store, tmp_path):
    """200 films of 2 MB: held at once, they were 400 MB more than one (issue 28 measured 1.56 GB for 300
    against 0.97 GB for one). Read a group at a time (release.predict.chunks), they cost what one group does
    (32 MB of files: 300 films measured 70 MB more than one)."""
    import numpy as np
    from PIL import Image

    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir(), many.mkdir()
    noise = np.random.default_rng(0).normal(120, 40, (1800, 1800)).clip(0, 255).astype(np.uint8)
    Image.fromarray(noise).save(one / "film.jpeg", quality=90)  # noise: JPEG cannot make it small
    size = (one / "film.jpeg").stat().st_size
    assert size > 1.8e6
    for i in range(200):
        shutil.copy(one / "film.jpeg", many / f"film-{i:03d}.jpeg")
    base = _peak_rss_mb([str(one)], smoke_store, tmp_path)
    peak = _peak_rss_mb([str(many)], smoke_store, tmp_path)
    assert len(json.loads((tmp_path / "out.json").read_text())) == 200
    assert peak - base < 0.4 * 200 * size / 2**20, (base, peak)  # before: more than all the files' bytes


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


# -- the release code in-process, on the toy model (tests/toy_model.py): seconds, no store ------------------


@pytest.fixture
def toy(tmp_path):
    return toy_model.pyfunc(tmp_path / "toy", threshold=0.5)


def test_every_file_is_a_row_in_order_with_its_probability_or_its_reason(toy, tmp_path):
    from pneumo.release import predict

    (tmp_path / "in" / "b").mkdir(parents=True)
    films = {"dark.png": 30, "b/bright.png": 230, "mid.PNG": 128}
    for name, level in films.items():
        (tmp_path / "in" / name).write_bytes(toy_model.gray_png(level))
    (tmp_path / "in" / "zero.png").write_bytes(b"")
    (tmp_path / "in" / "notes.txt").write_text("not an image suffix")
    (tmp_path / "in" / "._dark.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / "text.jpeg").write_text("patient notes")
    files = predict.collect([str(tmp_path / "in"), str(tmp_path / "text.jpeg")])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "in/b/bright.png", "in/dark.png", "in/mid.PNG", "in/zero.png", "text.jpeg"]
    rows = predict.predict_files(files, toy)
    assert [r.path for r in rows] == [str(f) for f in files]
    assert [r.probability for r in rows[:3]] == pytest.approx([toy_model.p_of(230), toy_model.p_of(30),
                                                              toy_model.p_of(128)], abs=1e-5)
    assert all(r.probability == round(r.probability, 6) for r in rows[:3])
    assert [r.label for r in rows] == ["PNEUMONIA", "NORMAL", "PNEUMONIA", "", ""]
    assert [r.error for r in rows] == ["", "", "", "empty file (0 bytes)", "not an image (unrecognised format)"]
    assert rows[3].probability is None and rows[4].probability is None
    assert all(r.ood is None and r.ood_flag is None for r in rows)  # no guard
    assert not predict.has_guard(toy)
    with pytest.raises(predict.InputError, match=f"^{tmp_path / 'scans'}: no such file or folder$"):
        predict.collect([str(tmp_path / "in"), str(tmp_path / "scans")])


def test_a_group_is_what_one_call_of_the_served_model_may_hold(tmp_path):
    from pneumo.release import limits, predict

    png = toy_model.gray_png(100, side=40)
    files = []
    for i in range(5):
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(png)
    (tmp_path / "big.png").write_bytes(png + b"\0" * 2**20)
    rows = limits.Limits(rows=2, megabytes=1.0, pixels=10**9)
    assert [len(g) for g in predict.chunks(files, 32, rows)] == [2, 2, 1]
    at_bytes = limits.Limits(rows=64, megabytes=2 * len(png) / 2**20, pixels=10**9)
    assert [len(g) for g in predict.chunks(files, 32, at_bytes)] == [2, 2, 1]  # two fit the byte line exactly
    at_pixels = limits.Limits(rows=64, megabytes=32.0, pixels=3 * 40 * 40)
    assert [len(g) for g in predict.chunks(files, 32, at_pixels)] == [3, 2]
    alone = list(predict.chunks([tmp_path / "big.png", *files[:2]], 1.0, rows))
    assert [[(f.name, d if isinstance(d, str) else len(d)) for f, d in g] for g in alone] == [
        [("big.png", "too large: 1 MB, over the limit of 1 MB a file"), ("0.png", len(png))], [("1.png", len(png))]]


def test_max_file_mb_widens_the_served_byte_line_for_this_process_only(toy):
    from pneumo.release import limits, predict

    served = toy.unwrap_python_model()
    assert predict.fit(toy, 1.0) == limits.SERVED and served.limits == limits.SERVED
    wider = predict.fit(toy, limits.SERVED.megabytes + 1)
    assert wider.megabytes == limits.SERVED.megabytes + 1 and wider.rows == limits.SERVED.rows
    assert served.limits == wider and wider.pixels == limits.SERVED.pixels


def test_explain_writes_one_overlay_per_classified_file_and_never_overwrites_one(toy, tmp_path):
    from PIL import Image

    from pneumo.release import predict

    (tmp_path / "in" / "b").mkdir(parents=True)
    for name in ("a.png", "b/a.png", "a.jpeg"):
        Image.new("L", (24, 24), 80).save(tmp_path / "in" / name)
    (tmp_path / "in" / "zero.png").write_bytes(b"")
    rows = predict.predict_files(predict.collect([str(tmp_path / "in")]), toy)
    out = tmp_path / "overlays"
    rows = predict.explain_rows(rows, toy, out)
    by_file = {Path(r.path).relative_to(tmp_path / "in").as_posix(): r.explanation for r in rows}
    assert by_file == {"a.jpeg": str(out / "a.png"), "a.png": str(out / "a-2.png"), "b/a.png": str(out / "a-3.png"),
                       "zero.png": ""}
    assert sorted(p.name for p in out.iterdir()) == ["a-2.png", "a-3.png", "a.png"]
    assert Image.open(out / "a.png").size[0] >= predict.DISPLAY_PX
