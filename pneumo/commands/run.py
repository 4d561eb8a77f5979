"""`pneumo train` and `pneumo sweep`: hand the arguments to Hydra untouched (its own --help, -m,
--cfg ...), then print the sweep's summary from the store."""

from __future__ import annotations

import os
import sys

from pneumo.config import paths


def train(hydra_argv: list[str]) -> int:
    """Run pneumo.job's Hydra app with these arguments; 1 when a job failed, 2 for a config error (nothing
    ran: the start-up check refused a value, Hydra could not compose the config, or the store is unusable)."""
    if error := _unusable_store():
        print(f"pneumo train: {error}", file=sys.stderr)
        return 2
    sys.argv = ["pneumo train", *hydra_argv]
    from pneumo.commands import summary
    from pneumo.config import startup
    from pneumo.job import main as hydra_main

    code = 0
    startup.REACHED.clear()
    try:
        hydra_main()
    except SystemExit as e:  # Hydra exits 1 after reporting a failed job; the start-up check exits 2
        code = e.code if isinstance(e.code, int) else 1
    if code == 1 and not startup.REACHED:  # Hydra's own report of a config it could not compose
        code = startup.USAGE
    if code == startup.USAGE:
        return code  # nothing ran: no sweep to summarise (and no store to open)
    failed = summary.summarize()
    return code or (1 if failed else 0)


def sweep(argv: list[str]) -> int:
    """A named sweep from sweeps/ as a multirun: `pneumo sweep NAME [overrides]`."""
    sweeps = sorted(p.stem for p in paths.SWEEPS_DIR.glob("*.yaml"))
    if not argv or argv[0].startswith("-"):
        print(f"usage: pneumo sweep NAME [overrides...]\nsweeps: {', '.join(sweeps)}", file=sys.stderr)
        return 2
    name, overrides = argv[0], argv[1:]
    if name not in sweeps:
        print(f"pneumo sweep: no sweep {name!r} in {paths.SWEEPS_DIR}; choose one of: {', '.join(sweeps)}",
              file=sys.stderr)
        return 2
    return train(["--multirun", "--config-dir", str(paths.SWEEPS_DIR), "--config-name", name, *overrides])


def _unusable_store() -> str | None:
    """Why MLFLOW_TRACKING_URI cannot be a store (once, before Hydra starts any job), or None."""
    from pneumo.config.errors import StoreError
    from pneumo.record import local

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        if uri:
            local.check(uri, f"MLFLOW_TRACKING_URI={uri}")
    except StoreError as e:
        return str(e)
    return None
