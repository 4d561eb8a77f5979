"""Issue 19: the out-of-distribution guard, the referral band and the shift check, on a model the
test trains itself in seconds (synthetic films, 32 px), logged as the job logs it.

The non-X-ray images are made here: colour photographs (smooth colour fields and gradients), a
round CT-like slice, inverted films (255 - film), films turned by 90 degrees, upside down (flipped
top-to-bottom, rotated by 180 degrees) and mirrored, blank and saturated frames. In-distribution
synthetic films must mostly pass.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_orientation import Format1

from pneumo.record import names

SIZE = 32


def _cfg(tmp: Path):
    from types import SimpleNamespace

    from test_trust_metrics import group

    return SimpleNamespace(data=group("data", "synthetic", "n_images=240", "image_px=64", f"cache_dir={tmp}/cache"),
                           evaluation=group("evaluation", "default", "bootstrap=50"))


def _jpeg(a: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.uint8), mode).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def not_xrays(films: list[bytes], seed: int = 0) -> dict[str, bytes]:
    """Images that are not paediatric chest films, made from nothing or from real films."""
    rng = np.random.default_rng(seed)
    out = {}
    yy, xx = np.mgrid[0:96, 0:128] / 96.0
    for i in range(4):  # colour photographs: smooth colour fields with texture
        base = rng.uniform(0, 255, 3)
        tilt = rng.uniform(-120, 120, (2, 3))
        rgb = base + tilt[0] * yy[..., None] + tilt[1] * xx[..., None] + rng.normal(0, 12, (96, 128, 3))
        out[f"photo{i}.jpeg"] = _jpeg(np.clip(rgb, 0, 255), "RGB")
    r = np.hypot(*(np.mgrid[0:128, 0:128] - 64))
    ct = np.where(r < 55, 90 + 40 * (r < 20) + rng.normal(0, 8, r.shape), 0)  # a round CT-like slice
    out["ct.jpeg"] = _jpeg(np.clip(ct, 0, 255))
    out["blank.png"], out["white.png"] = _jpeg(np.zeros((64, 64))), _jpeg(np.full((64, 64), 255))
    for i, f in enumerate(films[:3]):
        a = np.asarray(Image.open(io.BytesIO(f)).convert("L"))
        out[f"inverted{i}.jpeg"] = _jpeg(255 - a)
        out[f"rotated{i}.jpeg"] = _jpeg(np.rot90(a))
        out[f"upside_down{i}.jpeg"], out[f"rotated180_{i}.jpeg"] = _jpeg(a[::-1]), _jpeg(a[::-1, ::-1])
        out[f"mirrored{i}.jpeg"] = _jpeg(a[:, ::-1])  # issue 28: each once read as a confident label
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(splits, model, cfg, tmp): a small CNN fitted for a few epochs on 240 synthetic films."""
    import keras

    from pneumo import data
    from pneumo.runtime import quiet

    quiet.libraries(0)
    tmp = tmp_path_factory.mktemp("guard")
    cfg = _cfg(tmp)
    splits = data.load(cfg.data, SIZE, progress=False)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 1), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    for f in (8, 16):
        x = keras.layers.MaxPooling2D()(keras.layers.Conv2D(f, 3, padding="same", activation="relu")(x))
    x = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="pneumonia")(x))
    model.compile("adam", "binary_crossentropy")
    model.fit(splits.train.x, splits.train.y, epochs=8, batch_size=32, verbose=0)
    return splits, model, cfg, tmp


def _train_files(splits, label=None) -> list[bytes]:
    sub = splits.test
    return [(Path(splits.root) / p).read_bytes() for p, y in zip(sub.paths, sub.y) if label is None or y == label]


def test_guard_flags_non_xrays_and_passes_most_films(trained):
    from pneumo.evaluation import imagestats, ood_fit
    from pneumo.model import embedding

    splits, model, cfg, _ = trained
    guard, shares = ood_fit.fit_guard(model, splits, 0.5, cfg.evaluation, 32)
    assert shares[names.VAL_OOD_FLAGGED] <= 0.1
    films = _train_files(splits)
    strange = not_xrays(films)
    embed = embedding.embedder(model)

    def flags(blobs):
        from pneumo.data.imaging import decode

        feats = np.stack([imagestats.features(b) for b in blobs])
        x = np.stack([decode(b, SIZE) for b in blobs])[..., None]
        return guard.score(feats, embedding.predict(embed, x)[1])[1]

    weird = flags(list(strange.values()))
    assert weird.all(), [n for n, f in zip(strange, weird) if not f]
    assert flags(films).mean() <= 0.15  # test films: the same collection, never trained on


@pytest.fixture(scope="module")
def registered(trained, tmp_path_factory):
    """Versions in a tmp store: 1 = the model with the guard and a referral band (as the job logs it),
    2 = the same model logged without the guard (as versions registered before it were), 3 = with the
    guard's statistics saved as before the orientation check (format 1)."""
    import mlflow

    from pneumo.config.paths import local_tracking_uri
    from pneumo.evaluation import ood_fit, referral
    from pneumo.release import package

    splits, model, cfg, _ = trained
    store = tmp_path_factory.mktemp("store")
    uri = local_tracking_uri(store / "mlruns")
    mlflow.set_tracking_uri(uri)
    p_val = model.predict(splits.val.x, verbose=0).reshape(-1)
    band = referral.choose_band(splits.val.y, p_val, 0.5, 0.99)
    guard, _ = ood_fit.fit_guard(model, splits, 0.5, cfg.evaluation, 32)
    exp = mlflow.create_experiment("guard", artifact_location=str(store / "mlruns" / "artifacts"))
    versions = []
    for kw in ({"band": band, "guard": guard}, {}, {"guard": Format1(guard)}):
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.set_tag(names.TAG_ROLE, names.ROLE_JOB)
            model_uri = package.log_model(model, SIZE, 0.5, **kw)
            versions.append(mlflow.register_model(model_uri, names.MODEL_NAME).version)
            assert run.info.run_id
    mlflow.set_tracking_uri(None)
    return {"uri": uri, "store": store, "band": band, "versions": versions}


def _predict_cli(registered, version, paths_, capsys, monkeypatch):
    import json

    from pneumo import cli

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    capsys.readouterr()
    code = cli.main(["predict", *map(str, paths_), "--model", f"models:/{names.MODEL_NAME}/{version}",
                     "--format", "json"])
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def test_predict_flags_non_xrays_and_refers_inside_the_band(registered, trained, tmp_path, capsys, monkeypatch):
    splits = trained[0]
    films = _train_files(splits)
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name, blob in not_xrays(films).items():
        (folder / name).write_bytes(blob)
    for i, blob in enumerate(films):
        (folder / f"film{i:03d}.jpeg").write_bytes(blob)
    code, rows, err = _predict_cli(registered, registered["versions"][0], [folder], capsys, monkeypatch)
    assert code == 0 and "no out-of-distribution screening" not in err
    weird = [r for r in rows if not Path(r["path"]).name.startswith("film")]
    assert all(r[names.OOD_FLAG_COLUMN] and r["label"] == names.LABEL_OOD for r in weird), weird
    assert all(r["probability"] is not None for r in weird)  # the probability column stays
    good = [r for r in rows if Path(r["path"]).name.startswith("film")]
    assert sum(r[names.OOD_FLAG_COLUMN] for r in good) <= 0.15 * len(good)
    low, high = registered["band"]
    for r in good:
        if not r[names.OOD_FLAG_COLUMN]:
            inside = low < r["probability"] < high
            assert (r["label"] == names.LABEL_REFER) == inside, (r, low, high)


def test_a_version_without_the_guard_still_predicts_and_says_so_once(registered, trained, tmp_path, capsys,
                                                                      monkeypatch):
    films = _train_files(trained[0])[:3]
    files = []
    for i, blob in enumerate(films):
        files.append(tmp_path / f"f{i}.jpeg")
        files[-1].write_bytes(blob)
    code, rows, err = _predict_cli(registered, registered["versions"][1], files, capsys, monkeypatch)
    assert code == 0 and err.count("no out-of-distribution screening") == 1
    assert all(r[names.OOD_COLUMN] is None and r[names.OOD_FLAG_COLUMN] is None for r in rows)
    assert all(r["label"] in ("NORMAL", "PNEUMONIA") for r in rows)


def test_a_version_saved_before_the_orientation_check_still_predicts(registered, trained, tmp_path, capsys,
                                                                     monkeypatch):
    """Its statistics (format 1) load and screen with the distances they carry; the orientation check is
    what the new version adds: it flags every film turned upside down, and never lowers a film's score."""
    folder = tmp_path / "films"
    folder.mkdir()
    for i, blob in enumerate(_train_files(trained[0])[:8]):
        a = np.asarray(Image.open(io.BytesIO(blob)).convert("L"))
        (folder / f"f{i}.jpeg").write_bytes(blob)
        (folder / f"f{i}_upside_down.jpeg").write_bytes(_jpeg(a[::-1]))
    new_version, old_version = registered["versions"][0], registered["versions"][2]
    code, old, err = _predict_cli(registered, old_version, [folder], capsys, monkeypatch)
    assert code == 0 and "no out-of-distribution screening" not in err, err
    assert all(r[names.OOD_COLUMN] is not None and r["probability"] is not None for r in old)
    code, new, _ = _predict_cli(registered, new_version, [folder], capsys, monkeypatch)
    assert all(r[names.OOD_FLAG_COLUMN] for r in new if "upside_down" in r["path"])
    assert all(n[names.OOD_COLUMN] >= o[names.OOD_COLUMN] for n, o in zip(new, old))


def _shift_cli(registered, version, folder, capsys, monkeypatch):
    from pneumo import cli

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    capsys.readouterr()
    code = cli.main(["shift", str(folder), "--model", f"models:/{names.MODEL_NAME}/{version}", "--bootstrap", "200"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_shift_tells_a_new_site_from_held_out_films_and_records_it(registered, trained, tmp_path, capsys,
                                                                    monkeypatch):
    from helpers import client_for

    films = _train_files(trained[0])
    same, other = tmp_path / "same", tmp_path / "other"
    same.mkdir(), other.mkdir()
    for i, blob in enumerate(films):  # test films: never fitted, patients disjoint from train and val
        (same / f"f{i}.jpeg").write_bytes(blob)
        a = np.asarray(Image.open(io.BytesIO(blob)).convert("L"), float) / 255
        (other / f"f{i}.jpeg").write_bytes(_jpeg(255 * (0.25 + 0.6 * a ** 0.6)))  # another site's exposure
    version = registered["versions"][0]
    code, out, err = _shift_cli(registered, version, same, capsys, monkeypatch)
    assert code == 0 and "looks like the training films" in out, out + err
    code, out, err = _shift_cli(registered, version, other, capsys, monkeypatch)
    assert code == 0 and "shifted: validate with labelled films before use" in out, out + err
    assert "exposure" in out
    client = client_for(registered["store"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.`{names.TAG_ROLE}` = '{names.ROLE_SHIFT}'")
    assert len(runs) == 2 and all(r.data.tags.get(names.PARENT_RUN_ID) for r in runs)
    assert all(names.SHIFT_AUC in r.data.metrics for r in runs)
    card = client.get_model_version(names.MODEL_NAME, str(version)).description
    assert card.count("shift check on") == 2


@pytest.mark.timeout(300)  # the FIFO hung the check before (each file was read whole, in one go)
def test_shift_names_files_that_are_no_film_and_checks_the_rest(registered, trained, tmp_path, capsys, monkeypatch):
    from test_bad_input import special_files

    folder = tmp_path / "site"
    refused = special_files(folder)
    films = _train_files(trained[0])
    for i, blob in enumerate(films):
        (folder / f"f{i}.jpeg").write_bytes(blob)
    code, out, err = _shift_cli(registered, registered["versions"][0], folder, capsys, monkeypatch)
    assert code == 0 and f"{len(films)} films against" in out, out + err
    skipped = {line.split(": ", 1)[0].removeprefix("  skipped "): line.split(": ", 1)[1]
               for line in err.splitlines() if line.startswith("  skipped ")}
    assert set(skipped) == {str(folder / name) for name in refused}, err
    assert all(reason in skipped[str(folder / name)] for name, reason in refused.items()), err


@pytest.mark.parametrize("case, message", [("empty", "holds no JPEG/PNG files"),
                                           ("not images", "readable images"),
                                           ("no statistics", "no training-film statistics")])
def test_shift_bad_input_is_one_line_and_exit_2(registered, trained, tmp_path, capsys, monkeypatch, case, message):
    folder = tmp_path / "in"
    folder.mkdir()
    version = registered["versions"][0]
    if case == "not images":
        for i in range(12):
            (folder / f"x{i}.jpeg").write_text("not an image")
    if case == "no statistics":
        version = registered["versions"][1]
        for i, blob in enumerate(_train_files(trained[0])[:12]):
            (folder / f"f{i}.jpeg").write_bytes(blob)
    code, out, err = _shift_cli(registered, version, folder, capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.startswith("pneumo shift")]
    assert code == 2 and len(lines) == 1 and message in lines[0], err


def test_an_ensemble_is_measured_by_its_first_members_embedding(trained, tmp_path):
    """An ensemble (evaluation.ensemble > 1) is measured by its first member's embedding, also after a save/load."""
    import keras

    from pneumo.model import embedding
    from pneumo.model.builders import ensemble

    splits, model, _, _ = trained
    other = keras.models.clone_model(model)
    both = ensemble([model, other])
    both.save(tmp_path / "e.keras")
    loaded = keras.saving.load_model(tmp_path / "e.keras", compile=False, safe_mode=True)
    x = splits.test.x[:4]
    prob, emb = embedding.predict(embedding.embedder(loaded), x)
    first = keras.Model(model.inputs, model.get_layer("pneumonia").input).predict(x, verbose=0)
    np.testing.assert_allclose(prob, both.predict(x, verbose=0).reshape(-1), atol=1e-5)
    np.testing.assert_allclose(emb, first, atol=1e-4)
