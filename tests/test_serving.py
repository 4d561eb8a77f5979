"""The champion behind MLflow's real REST scoring server answers like the same model loaded locally.

Starts `mlflow models serve` (uvicorn, 127.0.0.1 only) on the smoke sweep's store and
POSTs base64-encoded JPEG files, exactly as the README's curl example does.
"""

from __future__ import annotations

import base64
import io
import json
import math
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

from pneumo.record import names

from helpers import client_for
from store_fixture import server_env, smoke_jpegs, smoke_store, start_server, stop, tail  # noqa: F401

pytestmark = pytest.mark.slow

CHAMPION_URI = f"models:/{names.MODEL_NAME}@{names.CHAMPION}"


def _post(url: str, body: dict) -> tuple[int, str]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _split(payloads: list) -> dict:
    return {"dataframe_split": {"columns": ["image"], "data": [[p] for p in payloads]}}


def _records(payloads: list) -> dict:
    return {"dataframe_records": [{"image": p} for p in payloads]}


def test_served_champion_classifies_base64_jpegs_like_the_local_model(smoke_store, tmp_path):
    from PIL import Image

    jpegs = smoke_jpegs(smoke_store, 4)
    big_rgb = io.BytesIO()  # a film far larger than training size, in colour
    Image.open(jpegs[0]).convert("RGB").resize((1200, 1000)).save(big_rgb, format="JPEG", quality=90)
    images = [p.read_bytes() for p in jpegs] + [big_rgb.getvalue()]
    not_an_image = b"%PDF-1.4\nthis is a report, not an x-ray\n"
    payloads = [base64.b64encode(b).decode("ascii") for b in [*images, not_an_image]]

    log = tmp_path / "serve.log"
    cmd = lambda port: [sys.executable, "-m", "mlflow", "models", "serve", "-m", CHAMPION_URI,  # noqa: E731
                        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    proc, port = start_server(cmd, server_env(smoke_store), log, "/ping")
    try:
        status, text = _post(f"http://127.0.0.1:{port}/invocations", _split(payloads))
        # MLflow's other DataFrame input format: one {"column": value} object a row.
        rec_status, rec_text = _post(f"http://127.0.0.1:{port}/invocations", _records(payloads))
        # Text that is not base64 at all fails MLflow's own input-schema check (binary column): the whole request.
        bad_status, bad_text = _post(f"http://127.0.0.1:{port}/invocations", _split(["%%% not base64 %%%"]))
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
