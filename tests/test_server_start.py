"""The test servers' start-up (tests/store_fixture.py) survives its port being taken.

A free port is free only until someone binds it; every test that starts a server
(`mlflow server`, `mlflow models serve`, `pneumo ui`, `make ui`) goes through
`start_server`, which starts the server again on a fresh port when that happens.
"""

from __future__ import annotations

import socket
import sys
import urllib.request

import store_fixture
from helpers import clean_env


def test_a_server_whose_port_was_taken_is_started_again_on_a_fresh_port(tmp_path, monkeypatch):
    (tmp_path / "ok").write_text("up")
    with socket.socket() as taken:  # someone else got the chosen port first
        taken.bind(("127.0.0.1", store_fixture.free_port()))
        taken.listen()
        chosen = iter([taken.getsockname()[1]])
        real = store_fixture.free_port
        monkeypatch.setattr(store_fixture, "free_port", lambda: next(chosen, None) or real())
        cmd = lambda port: [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",  # noqa: E731
                            "--directory", str(tmp_path)]
        proc, port = store_fixture.start_server(cmd, clean_env(), tmp_path / "server.log", "/ok", timeout=60)
        try:
            assert port != taken.getsockname()[1]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ok", timeout=10) as r:
                assert r.read() == b"up"
        finally:
            store_fixture.stop(proc)


def test_free_ports_come_from_outside_the_ephemeral_range():
    """Outgoing connections (a sweep's many HTTP requests) take ephemeral ports: those never collide."""
    low, high = store_fixture.ephemeral_range()
    assert not any(low <= store_fixture.free_port() <= high for _ in range(50))
