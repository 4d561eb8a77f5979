"""What a person sees in the MLflow UI after a sweep, checked in a real browser.

Starts the real `pneumo ui` (127.0.0.1 only) on the smoke sweep's store and drives
Debian's headless chromium through selenium (the system chromedriver: selenium-manager
never downloads anything). Screenshots of each page land in test-artifacts/ (kept by CI).
Asserted against the UI of the installed MLflow (3.x): it opens an experiment in its
"GenAI" mode, so the test switches to "Model training" as a person would.

Also the review pages: a registered version's model card (its description) with promote's
decision, and a job's evaluation/heatmaps.png in MLflow's artifact viewer.

docs/screenshot.py reuses these steps for the README picture.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

from pneumo.config import paths
from pneumo.record import names

from helpers import client_for
from store_fixture import server_env, smoke_store, start_server, stop  # noqa: F401

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = paths.ROOT / "test-artifacts"
DOCS_SHOT = paths.ROOT / "docs" / "mlflow-ui.png"
WAIT = 60  # seconds for any page to show what it should


def _missing_browser() -> list[str]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    return missing


# Off CI a machine without a browser skips; in CI the fixture below fails instead.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(_missing_browser()) and not os.environ.get("CI"),
                       reason=f"no browser for the UI test: {', '.join(_missing_browser())} missing "
                              "(apt-get install chromium chromium-driver; pip install selenium)"),
]

METRIC_COLUMNS = [names.TEST_AUC, "test_auprc", names.TEST_SENSITIVITY, names.TEST_SPECIFICITY,
                  names.VAL_AUC, names.THRESHOLD]


@pytest.fixture(scope="module")
def expected(smoke_store):
    """What the store holds, read with the MLflow client: the UI must show the same."""
    client = client_for(smoke_store)
    exp = client.get_experiment_by_name("smoke")
    jobs = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'")
    assert len(jobs) == 2
    children = {j.info.run_id: client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{j.info.run_id}'")
                for j in jobs}
    # the trials; other tests of the session may have nested a `pneumo evaluate` run under a job too
    trials = {j: [r for r in runs if r.data.tags.get(names.TAG_ROLE) == "trial"] for j, runs in children.items()}
    # The tests below loop over each job's trials: with none, every check on them would pass unchecked.
    assert all(trials.values()), {j.info.run_name: len(trials[j.info.run_id]) for j in jobs}
    champion = client.get_model_version_by_alias(names.MODEL_NAME, names.CHAMPION)
    champion_job = next(j for j in jobs if j.info.run_id == champion.run_id)
    return {"experiment_id": exp.experiment_id, "jobs": jobs, "trials": trials, "children": children,
            "champion": champion,
            "champion_job": champion_job}


@pytest.fixture(scope="module")
def ui_url(smoke_store, tmp_path_factory):
    log = tmp_path_factory.mktemp("ui") / "mlflow-server.log"
    cmd = lambda port: [str(Path(sys.executable).parent / "pneumo"), "ui", "--port", str(port)]  # noqa: E731
    env = {**server_env(smoke_store), "PATH": "/usr/bin:/bin"}  # as a user who never activated the venv
    proc, port = start_server(cmd, env, log, "/health")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def driver():
    missing = _missing_browser()
    if missing:  # only reached in CI (the skipif above covers elsewhere): a missing browser is a failure there
        pytest.fail(f"CI must run the UI test, but {', '.join(missing)} is missing")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000",
                "--disable-gpu", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    d = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    d.set_page_load_timeout(WAIT)
    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob("ui-*"):  # this run's pictures only, no stale FAILED ones
        old.unlink()
    try:
        yield d
    finally:
        d.quit()


# -- reading the page like a person -------------------------------------------------------


def _wait(d, xpath: str, what: str, timeout: float = WAIT):
    """The first displayed element matching xpath, waiting for it; fails saying what was expected."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(drv):
        try:
            return next((e for e in drv.find_elements(By.XPATH, xpath) if e.is_displayed()), False)
        except StaleElementReferenceException:
            return False

    try:
        return WebDriverWait(d, timeout, poll_frequency=0.5).until(shown)
    except TimeoutException:
        pytest.fail(f"not visible within {timeout:.0f} s: {what}\n  xpath: {xpath}\n  url: {d.current_url}")


def _shown(d, xpath: str) -> list:
    from selenium.webdriver.common.by import By

    return [e for e in d.find_elements(By.XPATH, xpath) if e.is_displayed()]


def _click(d, element) -> None:
    from selenium.common.exceptions import ElementClickInterceptedException

    try:
        element.click()
    except ElementClickInterceptedException:  # a tooltip or popover over it: click where a person would
        d.execute_script("arguments[0].click();", element)


@contextlib.contextmanager
def _page(d, name: str):
    """Screenshot the page as the step ends, failed or not (test-artifacts/ui-NAME.png)."""
    try:
        yield
    except BaseException:
        d.save_screenshot(str(ARTIFACTS / f"ui-{name}-FAILED.png"))
        (ARTIFACTS / f"ui-{name}-FAILED.html").write_text(d.page_source)
        raise
    d.save_screenshot(str(ARTIFACTS / f"ui-{name}.png"))


def _numbers(text: str) -> list[float]:
    out = []
    for word in text.split():
        try:
            out.append(float(word))
        except ValueError:
            pass
    return out


def _row(run_id: str) -> str:
    return f"//div[@role='row'][@row-id='{run_id}']"


def _close_assistant(d) -> None:
    for button in _shown(d, "//button[@aria-label='Close'][contains(@data-component-id,'assistant')]"):
        _click(d, button)


def _open_training_runs(d, ui_url: str, expected: dict) -> None:
    """Open the experiment's page and get to its runs table (MLflow 3 starts in its GenAI mode)."""
    d.get(f"{ui_url}/#/experiments/{expected['experiment_id']}")
    first_job = expected["jobs"][0].info.run_id
    _wait(d, f"{_row(first_job)} | //*[normalize-space(text())='Model training']", "the runs table or the "
          "'Model training' switch")
    if not _shown(d, _row(first_job)):
        for got_it in _shown(d, "//button[normalize-space(.)='Got it']"):  # a first-visit feature tour
            _click(d, got_it)
        _click(d, _wait(d, "//*[normalize-space(text())='Model training']", "the 'Model training' switch"))
    _wait(d, _row(first_job), "the job runs in the runs table")
    _close_assistant(d)


def _choose_columns(d, show: list[str], hide: list[str]) -> None:
    """Columns menu: untick some attribute columns, search for and tick metric columns."""
    from selenium.webdriver.common.keys import Keys

    _click(d, _wait(d, "//*[@data-testid='column-selection-dropdown']", "the Columns button"))
    node = "//span[contains(@class,'tree-title')][normalize-space(.)='{}']"
    for name in hide:
        _click(d, _wait(d, node.format(name), f"column '{name}' in the Columns menu"))
    search = _wait(d, "//input[@placeholder='Search columns']", "the column search box")
    for name in show:
        search.send_keys(Keys.CONTROL, "a")
        search.send_keys(name)
        _click(d, _wait(d, node.format(name), f"metric '{name}' in the Columns menu"))
    search.send_keys(Keys.ESCAPE)


# -- the pages ------------------------------------------------------------------------------


def test_runs_table_shows_each_job_its_test_metrics_and_its_trials_nested(driver, ui_url, expected):
    d, jobs, trials = driver, expected["jobs"], expected["trials"]
    with _page(d, "1-experiment-runs"):
        _open_training_runs(d, ui_url, expected)
        run_names = sorted(j.info.run_name for j in jobs)
        assert run_names[0].startswith("model=cnn") and run_names[1].startswith("model=resnet"), run_names
        for job in jobs:
            link = _wait(d, f"{_row(job.info.run_id)}//a[contains(@href, '/runs/{job.info.run_id}')]",
                         f"job run {job.info.run_name}")
            assert link.text.strip() == job.info.run_name
        # Trials are nested: only the jobs are top-level rows until expanded.
        for tlist in trials.values():
            assert all(not _shown(d, _row(t.info.run_id)) for t in tlist)

    with _page(d, "2-runs-with-test-metrics"):
        _choose_columns(d, METRIC_COLUMNS, hide=["Dataset", "Source", "Models"])
        for name in METRIC_COLUMNS:
            _wait(d, f"//div[@role='columnheader'][@col-id='metrics.`{name}`']", f"the {name} column header")
        for job in jobs:
            for name in (names.TEST_AUC, names.TEST_SENSITIVITY):
                cell = _wait(d, f"{_row(job.info.run_id)}//div[@col-id='metrics.`{name}`']",
                             f"{name} of {job.info.run_name}")
                shown_value = cell.get_attribute("textContent").strip()  # the full number, even where CSS clips it
                assert float(shown_value) == pytest.approx(job.data.metrics[name], abs=1e-9), (name, shown_value)

    with _page(d, "3-trials-nested-under-jobs"):
        for job in jobs:
            expander = _wait(d, f"{_row(job.info.run_id)}//button[contains(@data-component-id, 'runnamecellrenderer')]",
                             f"the expander of {job.info.run_name}")
            _click(d, expander)
            for t in trials[job.info.run_id]:
                link = _wait(d, f"{_row(t.info.run_id)}//a[contains(@href, '/runs/{t.info.run_id}')]",
                             f"trial {t.info.run_name} under {job.info.run_name}")
                assert link.text.strip() == t.info.run_name and t.info.run_name.startswith("trial-")
        # Each job's nested runs (its trials, any evaluation) are the rows right below it.
        from selenium.webdriver.common.by import By

        index = {}
        for e in d.find_elements(By.XPATH, "//div[@role='row'][@row-id][@row-index]"):
            index[e.get_attribute("row-id")] = int(e.get_attribute("row-index"))
        order = sorted(index, key=index.get)
        for job in jobs:
            at = order.index(job.info.run_id)
            nested = expected["children"][job.info.run_id]
            below = set(order[at + 1: at + 1 + len(nested)])
            assert below == {t.info.run_id for t in nested}, (job.info.run_name, order)
        d.execute_script("window.scrollTo(0, 0); document.activeElement && document.activeElement.blur();")


def test_job_run_page_shows_test_metrics_and_child_trials(driver, ui_url, expected):
    d = driver
    champion_job = next(j for j in expected["jobs"] if j.info.run_id == expected["champion"].run_id)
    with _page(d, "4-job-run-page"):
        d.get(f"{ui_url}/#/experiments/{expected['experiment_id']}/runs/{champion_job.info.run_id}")
        _wait(d, f"//*[normalize-space(text())='{champion_job.info.run_name}']", "the run's name as page title")
        for name in (names.TEST_AUC, names.TEST_SENSITIVITY, names.TEST_SPECIFICITY, names.VAL_AUC):
            label = _wait(d, f"//*[normalize-space(text())='{name}']", f"metric {name} in the run's metrics table")
            row = label.find_element("xpath", "./ancestor::*[@role='row'][1]")
            numbers = _numbers(row.text)  # as the page writes it: 1 for 1.0, 0 for 0.0
            assert numbers and numbers[0] == pytest.approx(champion_job.data.metrics[name], abs=1e-9), (name, row.text)
        trials = expected["trials"][champion_job.info.run_id]
        for t in trials:  # the child-run links load after the rest of the page
            link = _wait(d, f"//*[@data-testid='key-value-Child runs']//a[contains(@href, '/runs/{t.info.run_id}')]",
                         f"trial {t.info.run_name} under the run's 'Child runs'")
            assert link.text.strip() == t.info.run_name
        child = _wait(d, "//*[@data-testid='key-value-Child runs']", "the run's 'Child runs'")
        assert len(child.find_elements("tag name", "a")) == len(expected["children"][champion_job.info.run_id])


@pytest.mark.ci
def test_registered_model_page_shows_the_champion_alias_on_its_version(driver, ui_url, expected):
    d, champion = driver, expected["champion"]
    with _page(d, "5-registered-model"):
        d.get(f"{ui_url}/#/models/{names.MODEL_NAME}")
        alias = _wait(d, f"//*[@title='{names.CHAMPION}'][contains(@data-component-id, 'aliastag')]",
                      "the champion alias tag")
        assert alias.text.replace("\xa0", " ").strip() == f"@ {names.CHAMPION}"
        row = alias.find_element("xpath", "./ancestor::*[@role='row'][1]")
        assert f"Version {champion.version}" in row.text
        assert len(_shown(d, f"//*[@title='{names.CHAMPION}'][contains(@data-component-id, 'aliastag')]")) == 1


def test_registered_version_page_shows_its_model_card_and_promotes_decision(driver, ui_url, expected):
    """The card is the version's description: MLflow renders it as Markdown on the version's page."""
    d, champion = driver, expected["champion"]
    with _page(d, "6-model-version-card"):
        d.get(f"{ui_url}/#/models/{names.MODEL_NAME}/versions/{champion.version}")
        for heading in ("Intended use", "Data", "Threshold", "Known limits", "History"):
            _wait(d, f"//h2[normalize-space(.)='{heading}']", f"the card's '{heading}' heading")
        _wait(d, "//strong[normalize-space(.)='Not a diagnosis']", "the intended use's 'Not a diagnosis'")
        auc = f"{expected['champion_job'].data.metrics[names.TEST_AUC]:.3f}"
        row = _wait(d, f"//h2[starts-with(normalize-space(.), 'Test metrics')]/following::table[1]"
                       f"//tr[td[normalize-space(.)='{names.TEST_AUC}']]", "the test_auc row of the card's metrics")
        assert auc in row.text, (auc, row.text)
        _wait(d, "//h2[normalize-space(.)='History']/following::h3[contains(normalize-space(.), 'promoted (forced) for')]",
              "promote's decision under History")
        _close_assistant(d)


def test_job_run_opens_its_heatmap_grid_in_the_artifact_viewer(driver, ui_url, expected):
    from selenium.webdriver.common.by import By

    d, job = driver, expected["champion_job"]
    with _page(d, "7-job-heatmaps"):
        d.get(f"{ui_url}/#/experiments/{expected['experiment_id']}/runs/{job.info.run_id}"
              "/artifactPath/evaluation/heatmaps.png")
        image = _wait(d, "//img[@alt='evaluation/heatmaps.png']", "the heatmap grid shown by the artifact viewer")
        loaded = d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
        assert loaded and loaded >= 300, loaded  # the PNG itself arrived, not a broken-image icon
        listed = [e.text.strip() for e in d.find_elements(By.XPATH, "//*[normalize-space(text())='error_gallery.png']")]
        assert listed, "the error gallery beside it in evaluation/"
        _close_assistant(d)
