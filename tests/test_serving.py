"""The champion behind MLflow's real REST scoring server answers like the same model loaded locally,
and refuses a request past its limits (pneumo.release.limits) with a 400 before decoding anything.

Starts `mlflow models serve` (uvicorn, 127.0.0.1 only) on the smoke sweep's store and
POSTs base64-encoded JPEG files, exactly as the README's curl example does.
"""

from __future__ import annotations

import base64
import io
import json
import math
import sys

import numpy as np
import pytest
from test_bad_input import declaring

from pneumo.data.imaging import MAX_PIXELS
from pneumo.record import names
from pneumo.release import limits

import toy_model
from helpers import client_for
from store_fixture import post_json, server_env, smoke_jpegs, smoke_store, start_server, stop, tail  # noqa: F401
from toy_model import SIDE as TOY_SIDE
from toy_model import gray_png, p_of

CHAMPION_URI = f"models:/{names.MODEL_NAME}@{names.CHAMPION}"


def _split(payloads: list) -> dict:
    return {"dataframe_split": {"columns": ["image"], "data": [[p] for p in payloads]}}


def _records(payloads: list) -> dict:
    return {"dataframe_records": [{"image": p} for p in payloads]}


def _serve(store, log):
    cmd = lambda port: [sys.executable, "-m", "mlflow", "models", "serve", "-m", CHAMPION_URI,  # noqa: E731
                        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    return start_server(cmd, server_env(store), log, "/ping")


@pytest.mark.slow
@pytest.mark.ci
def test_served_champion_classifies_base64_jpegs_like_the_local_model(smoke_store, tmp_path):
    from PIL import Image

    jpegs = smoke_jpegs(smoke_store, 4)
    big_rgb = io.BytesIO()  # a film far larger than training size, in colour
    Image.open(jpegs[0]).convert("RGB").resize((1200, 1000)).save(big_rgb, format="JPEG", quality=90)
    images = [p.read_bytes() for p in jpegs] + [big_rgb.getvalue()]
    not_an_image = b"%PDF-1.4\nthis is a report, not an x-ray\n"
    payloads = [base64.b64encode(b).decode("ascii") for b in [*images, not_an_image]]

    log = tmp_path / "serve.log"
    proc, port = _serve(smoke_store, log)
    try:
        status, text = post_json(f"http://127.0.0.1:{port}/invocations", _split(payloads))
        # MLflow's other DataFrame input format: one {"column": value} object a row.
        rec_status, rec_text = post_json(f"http://127.0.0.1:{port}/invocations", _records(payloads))
        # Text that is not base64 at all fails MLflow's own input-schema check (binary column): the whole request.
        bad_status, bad_text = post_json(f"http://127.0.0.1:{port}/invocations", _split(["%%% not base64 %%%"]))
    finally:
        stop(proc)
    assert proc.poll() is not None

    assert status == 200, f"{status} {text[:2000]}\n{tail(log)}"
    preds = json.loads(text)["predictions"]  # json.loads accepts the NaN the server writes for a failed row
    assert len(preds) == len(payloads)
    # The same rows sent as dataframe_records: the same answer, row for row, every column.
    assert rec_status == 200, f"{rec_status} {rec_text[:2000]}\n{tail(log)}"
    by_records = json.loads(rec_text)["predictions"]
    assert len(by_records) == len(preds) and all(set(r) == set(preds[0]) for r in by_records + preds)
    for column in preds[0]:
        mine, theirs = [r[column] for r in by_records], [r[column] for r in preds]
        if column in ("probability", names.OOD_COLUMN):  # floats, NaN (or null) where a row has none
            np.testing.assert_allclose(np.array(mine, dtype=float), np.array(theirs, dtype=float), rtol=0, atol=1e-6)
        else:
            assert mine == theirs, column
    for row in preds[:-1]:
        assert set(row) == {"probability", "label", "error", names.OOD_COLUMN, names.OOD_FLAG_COLUMN}
        assert row["error"] == "", row
        assert 0.0 <= row["probability"] <= 1.0
        assert row["label"] in ("NORMAL", "PNEUMONIA", names.LABEL_OOD, names.LABEL_REFER)
    bad = preds[-1]
    assert bad["label"] == "" and "not an image" in bad["error"], bad
    assert bad["probability"] is None or math.isnan(bad["probability"])
    assert bad_status == 400 and "BAD_REQUEST" in bad_text, (bad_status, bad_text[:500])

    # Same bytes through the same registered model, loaded here: the server adds nothing and loses nothing.
    import mlflow
    import pandas as pd

    client = client_for(smoke_store)
    threshold = float(client.get_model_version_by_alias(names.MODEL_NAME, names.CHAMPION).tags["threshold"])
    local = mlflow.pyfunc.load_model(CHAMPION_URI).predict(pd.DataFrame({"image": [*images, not_an_image]}))
    served_prob = np.array([r["probability"] for r in preds[:-1]], dtype=float)
    np.testing.assert_allclose(served_prob, local["probability"].to_numpy()[:-1], rtol=0, atol=1e-5)
    assert [r["label"] for r in preds] == list(local["label"])
    assert [r["error"] for r in preds] == list(local["error"])
    # Labels are the job's validation-chosen threshold applied to the probability, where the guard lets it decide.
    decided = [(r["label"], p) for r, p in zip(preds[:-1], served_prob) if r["label"] in ("NORMAL", "PNEUMONIA")]
    assert decided and [label for label, _ in decided] == ["PNEUMONIA" if p >= threshold else "NORMAL"
                                                          for _, p in decided]


# -- limits: what one request may hold (pneumo.release.limits) -----------------------------------


SIDE = 7000  # the issue's film: a 47 KB PNG that decodes to 7000 x 7000 (49 Mpx, under the per-image cap)


def _flat_png(side: int = SIDE) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (side, side), 0).save(buf, "PNG")
    return buf.getvalue()


def test_each_line_of_a_request_lets_its_value_through_and_refuses_one_more():
    lines = limits.SERVED
    limits.check([b"x"] * lines.rows)
    with pytest.raises(limits.TooLarge, match=f"{lines.rows + 1} images in one request; the limit is {lines.rows}"):
        limits.check([b"x"] * (lines.rows + 1))
    line = int(lines.megabytes * 2**20)
    limits.check([b"\0" * (line // 2), b"\0" * (line - line // 2)])  # junk: no header, no pixels
    with pytest.raises(limits.TooLarge, match=f"the limit is {lines.megabytes:g} MB"):
        limits.check([b"\0" * (line // 2), b"\0" * (line - line // 2 + 1)])
    big = declaring(SIDE, SIDE)  # headers only: a few hundred bytes declaring 49 Mpx each
    rest = lines.pixels - 4 * SIDE * SIDE
    assert 0 < rest <= MAX_PIXELS and rest % 2000 == 0
    limits.check([big] * 4 + [declaring(2000, rest // 2000)])  # exactly on the pixel line
    with pytest.raises(limits.TooLarge, match=f"the limit is {lines.pixels:,}"):
        limits.check([big] * 4 + [declaring(2000, rest // 2000 + 1)])
    over_one = declaring(10_000, MAX_PIXELS // 10_000 + 1)  # past the per-image cap: its own row refuses it
    limits.check([big] * 4 + [over_one] * 10)


def test_the_issues_request_is_refused_by_the_model_before_any_decoding(tmp_path):
    """30 rows of a 47 KB PNG that decodes to 7000 x 7000 cost 10.8 s of CPU before the limits (issue 28).
    The logged model refuses it as MLflow's server answers a 400: MlflowException(INVALID_PARAMETER_VALUE);
    its PIL never decodes a pixel."""
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from PIL import ImageFile

    from pneumo.release import serving

    png = _flat_png()
    assert len(png) < 100_000
    model = serving.PneumoniaModel()
    model.limits = limits.SERVED  # what load_context sets; nothing else is reached before the refusal
    loads = []
    real = ImageFile.ImageFile.load
    ImageFile.ImageFile.load = lambda self: loads.append(self.size) or real(self)
    try:
        with pytest.raises(MlflowException) as refused:
            model.predict(None, pd.DataFrame({"image": [png] * 30}))
    finally:
        ImageFile.ImageFile.load = real
    assert refused.value.get_http_status_code() == 400 and "pixels of images in one request" in refused.value.message
    assert loads == []


@pytest.mark.slow
def test_the_server_answers_400_naming_the_line_to_requests_past_it(smoke_store, tmp_path):
    """Issue 28's requests, against a real `mlflow models serve`: a 50 MB body, and 30 rows of a 47 KB PNG that
    decodes to 7000 x 7000, were accepted (the second cost 10.8 s of CPU); one row too many, too. Each is a 400
    whose message names the limit, and the server goes on answering requests inside the lines."""
    png = base64.b64encode(_flat_png()).decode("ascii")
    film = base64.b64encode(smoke_jpegs(smoke_store, 1)[0].read_bytes()).decode("ascii")
    junk = base64.b64encode(b"\0" * (50 * 2**20 * 3 // 4)).decode("ascii")  # a 50 MB body, one row
    log = tmp_path / "serve.log"
    proc, port = _serve(smoke_store, log)
    url = f"http://127.0.0.1:{port}/invocations"
    try:
        answers = {
            "50 MB body": post_json(url, _split([junk])),
            "30 x 7000 px": post_json(url, _split([png] * 30)),
            "rows + 1": post_json(url, _split([film] * (limits.SERVED.rows + 1))),
            "rows": post_json(url, _split([film] * limits.SERVED.rows)),
        }
    finally:
        stop(proc)
    for case, phrase in (("50 MB body", "MB of images in one request; the limit is"),
                         ("30 x 7000 px", "pixels of images in one request; the limit is"),
                         ("rows + 1", f"images in one request; the limit is {limits.SERVED.rows}")):
        status, text = answers[case]
        assert status == 400, (case, status, text[:500], tail(log))
        assert json.loads(text)["error_code"] == "INVALID_PARAMETER_VALUE" and phrase in text, (case, text[-800:])
    status, text = answers["rows"]
    assert status == 200, (status, text[:500], tail(log))
    preds = json.loads(text)["predictions"]
    assert len(preds) == limits.SERVED.rows and all(r["error"] == "" for r in preds)


# -- the logged model's own code, loaded as MLflow's loader does, on a two-weight Keras model (no store) ------


def _loaded(tmp_path, **kwargs):
    """serving.PneumoniaModel after load_context on the artifacts package.log_model writes (tests/toy_model.py)."""
    from mlflow.pyfunc import PythonModelContext

    from pneumo.release import serving

    served = serving.PneumoniaModel()
    served.load_context(PythonModelContext(toy_model.artifacts(tmp_path, **kwargs), None))
    return served


def test_the_loaded_model_reads_its_size_threshold_and_band_and_labels_each_row(tmp_path):
    import pandas as pd

    served = _loaded(tmp_path, threshold=p_of(150), refer=(p_of(100), p_of(140)))
    assert served.image_size == TOY_SIDE and served.guard is None and served.embed is None
    levels = [0, 100, 120, 150, 255]
    rows = [gray_png(v) for v in levels] + [b"", base64.b64encode(gray_png(255)).decode(), "not base64!", 7]
    out = served.predict(None, pd.DataFrame({"image": rows}))
    np.testing.assert_allclose(out["probability"][:5], [p_of(v) for v in levels], atol=1e-4)
    assert list(out["label"][:5]) == ["NORMAL", "NORMAL", "REFER", "PNEUMONIA", "PNEUMONIA"]
    assert out["probability"][6] == pytest.approx(p_of(255), abs=1e-4) and out["label"][6] == "PNEUMONIA"
    assert list(out["error"]) == [""] * 5 + ["empty (0 bytes)", "", "not base64-encoded image bytes",
                                             "unsupported input type int"]
    assert list(out["label"][[5, 7, 8]]) == ["", "", ""] and out["probability"][[5, 7, 8]].isna().all()
    assert out[names.OOD_COLUMN].isna().all() and out[names.OOD_FLAG_COLUMN].isna().all()  # no guard: empty
    assert list(served.predict(None, [gray_png(0)])["label"]) == ["NORMAL"]  # a plain list of files too


def _unit_guard(threshold: float, width: int = 1):
    """A guard with unit scales and identity precisions around zero, for the toy model's embedding of `width`:
    its score of a film is plain Euclidean length over `threshold`."""
    from pneumo.evaluation import imagestats, ood

    n_feat = len(imagestats.features(gray_png(90)))
    z, one = np.zeros(n_feat), np.ones(n_feat)
    return ood.Guard(z, one, z, np.eye(n_feat), np.zeros(width), np.eye(width), 1.0, 1.0, threshold, 0.99,
                     np.zeros((4, n_feat)), np.zeros((4, width)), np.zeros(4), 0.5,
                     np.array([f"f{i}" for i in range(n_feat)]))


@pytest.mark.parametrize("threshold, flagged", [(1e9, False), (1e-9, True)])
def test_a_loaded_guard_scores_every_readable_row_on_the_models_embedding(tmp_path, threshold, flagged):
    import pandas as pd

    from pneumo.evaluation import imagestats

    guard = _unit_guard(threshold)
    served = _loaded(tmp_path, guard=guard)
    assert served.guard is not None and served.embed is not None
    films = [gray_png(90), gray_png(200)]
    out = served.predict(None, pd.DataFrame({"image": [films[0], b"", films[1]]}))
    feats = np.stack([imagestats.features(f) for f in films])
    expected, flags = guard.score(feats, np.array([[90 / 255], [200 / 255]]))
    np.testing.assert_allclose(out[names.OOD_COLUMN][[0, 2]], expected, rtol=1e-4)
    assert list(out[names.OOD_FLAG_COLUMN]) == [flagged, None, flagged] and list(flags) == [flagged] * 2
    assert list(out["label"]) == (["OUT_OF_DISTRIBUTION", "", "OUT_OF_DISTRIBUTION"] if flagged
                                  else ["NORMAL", "", "PNEUMONIA"])
    np.testing.assert_allclose(out["probability"][[0, 2]], [p_of(90), p_of(200)], atol=1e-4)


def test_measure_keeps_a_wide_embedding_whole_and_answers_a_request_of_no_film_with_empty_arrays(tmp_path, capsys):
    """What `pneumo shift` joins across groups of files: per readable film its probability, embedding (all of
    its width) and image features; a group with no readable film gives arrays of no row that still index."""
    from pneumo.evaluation import imagestats

    n_feat = len(imagestats.features(gray_png(90)))
    served = _loaded(tmp_path, guard=_unit_guard(1e9, width=2), width=2)
    m = served.measure([gray_png(90), b"not a film", gray_png(200)])
    assert list(m["rows"]) == [0, 2] and m["errors"][0] == m["errors"][2] == "" and m["errors"][1]
    np.testing.assert_allclose(m["emb"], [[90 / 255, 1 - 90 / 255], [200 / 255, 1 - 200 / 255]], atol=1e-6)
    np.testing.assert_allclose(m["prob"], [p_of(90), p_of(200)], atol=1e-4)
    assert m["feats"].shape == (2, n_feat)
    none = served.measure([b"not a film"])
    assert none["prob"].shape == (0,) and none["emb"] is None and none["feats"] is None
    assert np.zeros(0)[none["rows"]].shape == (0,)  # rows stay integers, usable as an index
    served.guard = served.embed = None  # a version registered before the guard: the model alone
    np.testing.assert_allclose(served.measure([gray_png(90)])["prob"], [p_of(90)], atol=1e-4)
    assert capsys.readouterr().out == ""  # no progress bar per request in the server's log


def test_a_model_file_carrying_python_code_is_refused_at_load(tmp_path):
    """Keras' safe mode: a .keras file whose Lambda layer would run arbitrary Python is not deserialized."""
    import keras
    from mlflow.pyfunc import PythonModelContext

    from pneumo.release import serving

    artifacts = toy_model.artifacts(tmp_path)
    x = keras.Input((TOY_SIDE, TOY_SIDE, 1))
    keras.Model(x, keras.layers.Lambda(lambda t: t * 2)(x)).save(artifacts["keras_model"])
    with pytest.raises(ValueError, match="safe_mode"):
        serving.PneumoniaModel().load_context(PythonModelContext(artifacts, None))


def test_a_request_is_held_to_the_instances_lines_and_its_base64_read_strictly(tmp_path):
    """predict checks the lines this process set (pneumo predict widens them), not the served default; and text
    that is base64 only once its stray characters are dropped is refused, not guessed at."""
    from dataclasses import replace

    served = _loaded(tmp_path)
    rows = limits.SERVED.rows + 1
    with pytest.raises(Exception, match=f"{rows} images in one request"):
        served.predict(None, [gray_png(90)] * rows)
    served.limits = replace(limits.SERVED, rows=rows)
    assert len(served.predict(None, [gray_png(90)] * rows)) == rows
    text = base64.b64encode(gray_png(90)).decode("ascii")
    out = served.predict(None, [text, text[:8] + "!" + text[8:]])
    assert list(out["error"]) == ["", "not base64-encoded image bytes"] and out["label"][1] == ""
