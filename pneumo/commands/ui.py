"""`pneumo ui`: the MLflow UI on the store pneumo writes to, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import os
import sys

from pneumo.config import paths


def register(sub) -> None:
    p = sub.add_parser("ui", help="open the MLflow UI on the local store (127.0.0.1)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--backend-store-uri", help="default: MLFLOW_TRACKING_URI, else the local store")
    p.add_argument("--relocate", action="store_true",
                   help="a moved or copied store: record its new folder first, so the UI shows its artifacts")
    p.set_defaults(func=ui)


def ui(args) -> int:
    from pneumo.record import local, store

    if args.backend_store_uri:  # this store, whatever MLFLOW_TRACKING_URI says
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    # Read only: a store that does not exist is refused, not created empty.
    opened = store.connect(args.backend_store_uri, writes=args.relocate, given="--backend-store-uri")
    uri = opened.uri
    if any(local.local_path(now).is_dir() for now in opened.moved().values()):
        print(f"pneumo ui: {uri} was moved or copied: its database still names the old folder, so the UI shows "
              "no artifacts; `pneumo ui --relocate` records the new one first", file=sys.stderr)
    # This interpreter runs MLflow (and MLflow runs uvicorn the same way): no `mlflow`
    # on PATH needed, so it works from a venv that was never activated.
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host,
           "--port", str(args.port)]
    if db := local.database(uri):  # experiments made in the UI keep their artifacts beside the database too
        cmd += ["--default-artifact-root", str(db.parent / paths.ARTIFACTS)]
    print(f"pneumo ui: {uri} at http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    os.execv(cmd[0], cmd)
