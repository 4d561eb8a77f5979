"""Refresh the README's heatmap grid and error gallery from a store of your own, e.g. after `make demo`:

    .venv/bin/python docs/pictures.py mlruns demo

Takes the job of EXPERIMENT that ranks first by test AUC (the one `pneumo compare` lists
first), downloads the `evaluation/heatmaps.png` and `evaluation/error_gallery.png` it logged,
and writes them to docs/heatmaps.png and docs/error-gallery.png: as logged when under 300 KB,
else as 256-colour PNGs (smaller by a quarter while still over), so the README shows what MLflow holds.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pneumo.config import paths  # noqa: E402 -- the checkout's pneumo, put on the path above
from pneumo.record import names  # noqa: E402

PICTURES = {"evaluation/heatmaps.png": ROOT / "docs" / "heatmaps.png",
            "evaluation/error_gallery.png": ROOT / "docs" / "error-gallery.png"}
MAX_BYTES = 300_000


def shrink(src: Path, dst: Path) -> int:
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        im.save(dst, optimize=True)  # as logged, when that is small enough
        while dst.stat().st_size > MAX_BYTES and im.width >= 400:
            im.quantize(256, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)
            im = im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.LANCZOS)
        return dst.stat().st_size


def main(store: str, experiment: str) -> None:
    import mlflow

    client = mlflow.MlflowClient(paths.local_tracking_uri(Path(store).resolve()))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        sys.exit(f"no experiment {experiment!r} in {store}")
    jobs = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job' and attributes.status = "
                              "'FINISHED'", order_by=[f"metrics.{names.TEST_AUC} DESC"], max_results=1)
    if not jobs:
        sys.exit(f"no finished job in {experiment!r}")
    job = jobs[0]
    with tempfile.TemporaryDirectory() as tmp:
        for artifact, dst in PICTURES.items():
            size = shrink(Path(client.download_artifacts(job.info.run_id, artifact, tmp)), dst)
            print(f"wrote {dst.relative_to(ROOT)} ({size // 1000} KB): {artifact} of job {job.info.run_name} "
                  f"(run {job.info.run_id}, test AUC {job.data.metrics[names.TEST_AUC]:.3f})")


if __name__ == "__main__":
    main(*sys.argv[1:3])
