"""The tests' pre-imported pneumo (tests/zygote.py) forks a job only where a new process would see the
environment the fork sees: the variables that differ are all read after the imports."""

from __future__ import annotations

import pytest

from helpers import RUN_TIME, _zygote, _zygote_can_fork, _zygote_differs, clean_env


@pytest.mark.slow
@pytest.mark.ci
def test_a_job_is_forked_only_where_its_environment_differs_in_what_is_read_after_the_imports(monkeypatch):
    base, read = clean_env(), _zygote().read_at_import
    assert {"HOME", "KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "PNEUMO_ROOT"} <= read  # the record is real
    assert not set(RUN_TIME) & read, "read at import, yet listed as read after it: remove it from RUN_TIME"
    assert not _zygote_differs(base), "a test's own environment differs from the zygote's: every child is a new interpreter"
    assert _zygote_can_fork(base, fresh=False) and not _zygote_can_fork(base, fresh=True)
    for name in RUN_TIME:
        assert _zygote_can_fork({**base, name: "x"}, fresh=False), name
    for name, value in [
        ("HOME", "/elsewhere"),  # Keras fixes its config folder from it at import
        ("LANG", "C"), ("LC_ALL", "C"),  # the interpreter's start reads them
        ("CUDA_VISIBLE_DEVICES", ""), ("PNEUMO_ROOT", "/elsewhere"), ("KERAS_BACKEND", "jax"),
        ("TF_CPP_MIN_LOG_LEVEL", "0"), ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true"),
        ("PNEUMO_SOMETHING_NEW", "1"),  # nobody has said when it is read
    ]:
        assert not _zygote_can_fork({**base, name: value}, fresh=False), name
    assert not _zygote_can_fork({k: v for k, v in base.items() if k != "HOME"}, fresh=False)  # unset differs too
    # Should a library start reading one of RUN_TIME at import, the zygote's record overrules the list.
    monkeypatch.setattr(_zygote(), "read_at_import", read | {"MLFLOW_TRACKING_URI"})
    assert not _zygote_can_fork({**base, "MLFLOW_TRACKING_URI": "x"}, fresh=False)
