"""Refresh docs/mlflow-ui.png from a store of your own, e.g. after `make demo`:

    .venv/bin/python docs/screenshot.py mlruns demo

Starts `mlflow server` on 127.0.0.1 over STORE (a folder holding mlflow.db and
artifacts/), opens EXPERIMENT's runs table in headless Debian chromium with the
test metrics as columns, and saves the table, cropped below its last row.
Reuses the browser steps of tests/test_ui.py, so the picture shows what that
test asserts.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_ui as ui

from pneumo.config import paths
from pneumo.record import names

from store_fixture import free_port, start, stop, wait_until_up


def main(store: str, experiment: str) -> None:
    import mlflow
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    store = Path(store).resolve()
    uri = paths.local_tracking_uri(store)
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    jobs = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'", order_by=["metrics.test_auc DESC"])
    expected = {"experiment_id": exp.experiment_id, "jobs": jobs}
    port, log = free_port(), Path(tempfile.mkdtemp()) / "server.log"
    server = start([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--default-artifact-root",
                    str(store / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                   {"PATH": "/usr/bin:/bin"}, log)
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(arg)
    options.binary_location = str(ui.CHROMIUM)
    d = webdriver.Chrome(options=options, service=Service(executable_path=str(ui.CHROMEDRIVER)))
    try:
        wait_until_up(server, f"http://127.0.0.1:{port}/health", log)
        ui._open_training_runs(d, f"http://127.0.0.1:{port}", expected)
        ui._choose_columns(d, ui.METRIC_COLUMNS, hide=["Dataset", "Source", "Models"])
        ui._wait(d, f"//div[@role='columnheader'][@col-id='metrics.`{names.TEST_AUC}`']", "the test_auc column")
        d.execute_script("window.scrollTo(0, 0); document.activeElement && document.activeElement.blur();")
        last = ui._wait(d, ui._row(jobs[-1].info.run_id), "the last job row")
        shot = Path(tempfile.mkdtemp()) / "shot.png"
        d.save_screenshot(str(shot))
        from PIL import Image

        bottom = int(last.rect["y"] + last.rect["height"] + 48)
        with Image.open(shot) as im:
            im.crop((0, 0, im.width, min(bottom, im.height))).save(ui.DOCS_SHOT, optimize=True)
        print(f"wrote {ui.DOCS_SHOT}")
    finally:
        d.quit()
        stop(server)


if __name__ == "__main__":
    main(*sys.argv[1:3])
