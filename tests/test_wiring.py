"""Issue 27: a real job's registered model, loaded back and served, does what the job's record says.

The store (tests/store_fixture.py `wired_store`, built once) holds two real toy jobs of one multirun
(the real conf/ shrunk, `evaluation.refer` set): one registered with its out-of-distribution guard
and referral band, and one whose guard could not be fitted (`evaluation.ood_sample=0`). Loaded
back, the first flags pictures that are no chest film and answers REFER inside the band its job
logged, locally and over `mlflow models serve`; the second is registered saying it has no guard,
its card says so, and `pneumo promote` takes it only with --force.
"""

from __future__ import annotations

import base64
import io
import json
import sys

import numpy as np
import pytest
from PIL import Image

from pneumo.record import names

from helpers import client_for, tracking_uri
from store_fixture import copy_store, post_json, server_env, start_server, stop, tail, wired_store  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.ci]  # the wiring of what is served: CI runs all of it

DECIDED = ("NORMAL", "PNEUMONIA")


def post(url: str, images: list[bytes]) -> tuple[int, str]:
    """The images as MLflow's REST server takes them: base64 text in a dataframe_split."""
    return post_json(url, {"dataframe_split": {"columns": ["image"],
                                               "data": [[base64.b64encode(b).decode("ascii")] for b in images]}})


def not_chest_films(seed: int = 0) -> dict[str, bytes]:
    """A colour photograph (smooth colour fields with texture) and a frame of gray noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:96, 0:128] / 96.0
    rgb = np.array([180.0, 120, 60]) + 80 * yy[..., None] * [1, -1, 0.5] + rng.normal(0, 12, (96, 128, 3))
    out = {}
    for name, a, mode in (("photo", rgb, "RGB"), ("noise", rng.uniform(0, 255, (128, 128)), "L")):
        buf = io.BytesIO()
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), mode).save(buf, "JPEG", quality=92)
        out[name] = buf.getvalue()
    return out


def versions(client) -> tuple:
    """(the version registered with its guard, the one registered without)."""
    found = client.search_model_versions(f"name='{names.MODEL_NAME}'")
    guarded = [v for v in found if names.TAG_NO_GUARD not in v.tags]
    unguarded = [v for v in found if names.TAG_NO_GUARD in v.tags]
    assert len(guarded) == len(unguarded) == 1, [(v.version, v.tags) for v in found]
    return guarded[0], unguarded[0]


@pytest.fixture(scope="module")
def wired(wired_store):
    """The guarded version, its loaded pyfunc, its job's metrics, and what it answers for every film of the set."""
    import mlflow
    import pandas as pd

    client = client_for(wired_store)
    try:
        guarded, _ = versions(client)
        model = mlflow.pyfunc.load_model(f"models:/{names.MODEL_NAME}/{guarded.version}")
        files = sorted((wired_store / "cache").rglob("*.jpeg"))
        films = [f.read_bytes() for f in files]
        rows = model.unwrap_python_model().limits.rows  # a request holds at most this many films
        answers = pd.concat([model.predict(pd.DataFrame({"image": films[i:i + rows]}))
                             for i in range(0, len(films), rows)], ignore_index=True)
    finally:
        mlflow.set_tracking_uri(None)
    metrics = client.get_run(guarded.run_id).data.metrics
    return {"client": client, "version": guarded, "model": model, "metrics": metrics, "films": films,
            "answers": answers}


def refer_film(wired) -> bytes:
    """A film the model answers REFER for: one of the set, else a blend of a film below the band and one
    above it, bisected until its probability falls inside."""
    import pandas as pd

    answers, films = wired["answers"], wired["films"]
    inside = np.flatnonzero(answers["label"] == names.LABEL_REFER)
    if len(inside):
        return films[inside[0]]
    low, high = wired["model"].unwrap_python_model().band
    prob = answers["probability"].to_numpy()
    ok = ~answers[names.OOD_FLAG_COLUMN].astype(bool).to_numpy()
    a, b = np.flatnonzero(ok & (prob <= low)), np.flatnonzero(ok & (prob >= high))
    assert len(a) and len(b), f"no film on both sides of the band ({low}, {high}): {sorted(prob)}"
    x0, x1 = (np.asarray(Image.open(io.BytesIO(films[i])).convert("L"), float) for i in (a[0], b[0]))
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        buf = io.BytesIO()
        Image.fromarray(np.round((1 - mid) * x0 + mid * x1).astype(np.uint8), "L").save(buf, "PNG")
        row = wired["model"].predict(pd.DataFrame({"image": [buf.getvalue()]})).iloc[0]
        if row["label"] == names.LABEL_REFER:
            return buf.getvalue()
        lo, hi = (mid, hi) if row["probability"] <= low else (lo, mid)
    pytest.fail(f"no blend of two films falls inside the band ({low}, {high})")


def test_the_registered_model_carries_its_guard_and_the_band_its_job_logged(wired):
    import pandas as pd

    inner, m, version = wired["model"].unwrap_python_model(), wired["metrics"], wired["version"]
    assert inner.guard is not None and inner.embed is not None
    assert inner.threshold == float(version.tags[names.THRESHOLD]) == m[names.THRESHOLD]
    assert inner.band == (m[names.REFER_LOW], m[names.REFER_HIGH])
    low, high = inner.band
    assert low < inner.threshold < high, (low, inner.threshold, high)  # a band around the threshold, not empty
    assert names.VAL_OOD_FLAGGED in m and names.TAG_NO_GUARD not in version.tags

    strange = not_chest_films()
    out = wired["model"].predict(pd.DataFrame({"image": list(strange.values())}))
    assert list(out["label"]) == [names.LABEL_OOD] * len(strange), out
    assert out[names.OOD_FLAG_COLUMN].tolist() == [True] * len(strange) and (out[names.OOD_COLUMN] > 1).all()
    assert out["probability"].notna().all()  # the probability stays beside the flag

    answers = wired["answers"]  # the films of the set: the job's threshold and band decide each label
    assert (answers["error"] == "").all() and answers[names.OOD_FLAG_COLUMN].mean() <= 0.25
    for _, row in answers.iterrows():
        p = row["probability"]
        expected = (names.LABEL_OOD if row[names.OOD_FLAG_COLUMN] else names.LABEL_REFER if low < p < high
                    else "PNEUMONIA" if p >= inner.threshold else "NORMAL")
        assert row["label"] == expected, (row.to_dict(), low, inner.threshold, high)
    film = refer_film(wired)
    assert wired["model"].predict(pd.DataFrame({"image": [film]}))["label"].tolist() == [names.LABEL_REFER]


def test_over_rest_the_served_model_flags_foreign_pictures_and_refers_inside_the_band(wired, wired_store, tmp_path):
    import pandas as pd

    strange = not_chest_films()
    decided = [f for f, label in zip(wired["films"], wired["answers"]["label"]) if label in DECIDED][:1]
    images = [*strange.values(), refer_film(wired), *decided]
    uri = f"models:/{names.MODEL_NAME}/{wired['version'].version}"
    log = tmp_path / "serve.log"
    cmd = lambda port: [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri,  # noqa: E731
                        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    proc, port = start_server(cmd, server_env(wired_store), log, "/ping")
    try:
        status, text = post(f"http://127.0.0.1:{port}/invocations", images)
    finally:
        stop(proc)
    assert status == 200, f"{status} {text[:2000]}\n{tail(log)}"
    served = json.loads(text)["predictions"]
    assert [r["label"] for r in served[:3]] == [names.LABEL_OOD, names.LABEL_OOD, names.LABEL_REFER], served
    assert [r[names.OOD_FLAG_COLUMN] for r in served[:3]] == [True, True, False]
    local = wired["model"].predict(pd.DataFrame({"image": images}))
    assert [r["label"] for r in served] == list(local["label"])
    np.testing.assert_allclose([r["probability"] for r in served], local["probability"], rtol=0, atol=1e-5)


def test_a_model_that_cannot_get_its_guard_says_so_and_is_promoted_only_by_force(wired_store, tmp_path, capsys,
                                                                                 monkeypatch):
    import mlflow
    import pandas as pd

    from pneumo.cli import main

    client = client_for(wired_store)
    _, bare = versions(client)
    number, why = str(bare.version), bare.tags[names.TAG_NO_GUARD]
    assert "evaluation.ood_sample=0" in why and "at least 2" in why
    assert names.VAL_OOD_FLAGGED not in client.get_run(bare.run_id).data.metrics
    card = bare.description
    assert f"**no out-of-distribution guard**: the job could not fit it ({why})" in card
    assert "`pneumo promote` refuses this version unless forced" in card
    model = mlflow.pyfunc.load_model(f"models:/{names.MODEL_NAME}/{bare.version}")
    mlflow.set_tracking_uri(None)
    out = model.predict(pd.DataFrame({"image": list(not_chest_films().values())}))
    assert out[names.OOD_FLAG_COLUMN].isna().all()  # nothing screens a photograph: why it is refused
    assert set(out["label"]) <= {*DECIDED, names.LABEL_REFER}

    store = copy_store(wired_store, tmp_path / "copy")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(store))
    capsys.readouterr()
    assert main(["promote", "--version", number, "--dry-run"]) == 1
    printed = capsys.readouterr().out
    assert f"FAIL: registered without its out-of-distribution guard ({why})" in printed
    main(["promote", "--dry-run"])  # the best that can pass, if any, is never it; when ranked above, it is skipped
    text = capsys.readouterr()
    assert f"would promote version {bare.version} " not in text.out
    for line in (text.out + text.err).splitlines():
        if f"version {bare.version} (" in line:
            assert "out-of-distribution guard" in line, line
    assert main(["promote", "--version", number, "--force", "--reason", "a labelled screening only"]) == 0
    c = client_for(store)
    assert str(c.get_registered_model(names.MODEL_NAME).aliases[names.CHAMPION]) == number
    history = c.get_model_version(names.MODEL_NAME, number).description
    assert "promoted (forced)" in history and "reason given: a labelled screening only" in history
    mlflow.set_tracking_uri(None)
