"""`pneumo ui`: the MLflow UI on the store pneumo writes to, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("ui", help="open the MLflow UI on the local store (127.0.0.1)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--backend-store-uri", help="default: MLFLOW_TRACKING_URI, else the local store")
    p.set_defaults(func=ui)


def ui(args) -> int:
    from pneumo.record import store

    uri = args.backend_store_uri or store.setup()
    # This interpreter runs MLflow (and MLflow runs uvicorn the same way): no `mlflow`
    # on PATH needed, so it works from a venv that was never activated.
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host,
           "--port", str(args.port)]
    if uri.startswith("sqlite:"):
        cmd += ["--default-artifact-root", str(Path(uri.removeprefix("sqlite:///")).parent / "artifacts")]
    print(f"pneumo ui: {uri} at http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    os.execv(cmd[0], cmd)
