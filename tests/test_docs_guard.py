"""Figures that cannot drift (issue 27): every table of figures in the README, docs/ and benchmarks/README.md
sits in a block that names the command that writes it; a quoted sweep table agrees with a fresh run within
a tolerance per column, measured (docs/spread.py); a table whose store is not here is at least in the form
its script writes, and the script writes that form from a real store.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys

import pytest

from pneumo.config import paths

from store_fixture import smoke_copy, smoke_store  # noqa: F401

DOCS = paths.ROOT / "docs"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.setdefault(name, module)
    return module


demo_results, docblocks, trust_results, real_results, spread, compare_examples, epoch_results, mutation_results = (
    _load(n) for n in ("demo_results", "docblocks", "trust_results", "real_results", "spread", "compare_examples",
                       "epoch_results", "mutation_results"))

HERE = "Keras 3.15.1 on tensorflow 2.21.0, cpu: AMD EPYC (2 cores, avx512f)"
ELSEWHERE = "Keras 3.16.0 on tensorflow 2.22.0, cpu: Intel Xeon (2 cores, avx2)"
SMOKE = demo_results.TOLERANCES["smoke"]


def block(rows: list[str], ran_on: str = HERE, images: int = 22) -> str:
    return "\n".join(["| job | val_auc | test_auc [95% CI] | test_sensitivity | test_specificity | threshold |",
                      "|---|---|---|---|---|---|", *rows, "",
                      f"Written by `python docs/demo_results.py smoke` ({ran_on}, {images} test images)."])


QUOTED = block(["| model=cnn | 0.788 | 0.786 [0.555, 1.000] | 0.714 | 0.500 | 0.565 |",
                "| model=resnet | 0.742 | 0.500 [0.000, 0.868] | 0.571 | 0.250 | 0.332 |"])
CELL = {"val_auc": "0.788", "test_auc [95% CI]": "0.786", "test_sensitivity": "0.714",
        "test_specificity": "0.500", "threshold": "0.565"}  # model=cnn's first number in each column


def moved(column: str, by: float, ran_on: str = ELSEWHERE) -> str:
    """QUOTED with model=cnn's `column` moved by `by`, produced on `ran_on`."""
    line = QUOTED.splitlines()[2]
    cells = line.split(" | ")
    i = list(CELL).index(column) + 1
    cells[i] = cells[i].replace(CELL[column], f"{float(CELL[column]) + by:.3f}", 1)
    return QUOTED.replace(line, " | ".join(cells)).replace(HERE, ran_on)


def test_the_same_block_agrees():
    assert demo_results.differences(QUOTED, QUOTED, SMOKE) == []


def test_a_removed_row_is_a_difference_on_any_machine():
    for ran_on in (HERE, ELSEWHERE):
        produced = block(QUOTED.splitlines()[2:3], ran_on)
        found = demo_results.differences(QUOTED, produced, SMOKE)
        assert any(d.startswith("jobs:") for d in found), found


def test_another_test_image_count_is_a_difference_on_any_machine():
    produced = QUOTED.replace("22 test images", "21 test images").replace(HERE, ELSEWHERE)
    assert any(d.startswith("test images") for d in demo_results.differences(QUOTED, produced, SMOKE))


def test_on_the_same_machine_the_last_digit_counts():
    assert demo_results.differences(QUOTED, moved("threshold", 0.001, HERE), SMOKE) == [
        "model=cnn threshold: quoted 0.565, produced 0.566 (same machine and versions: must be equal)"]


@pytest.mark.parametrize("column", list(CELL))
def test_elsewhere_each_column_holds_within_its_own_tolerance(column):
    """Just inside a column's tolerance passes, just outside fails and names that column only."""
    tolerance = SMOKE[column]
    for sign in (1, -1):
        assert demo_results.differences(QUOTED, moved(column, sign * tolerance), SMOKE) == []
        outside = demo_results.differences(QUOTED, moved(column, sign * (tolerance + 0.002)), SMOKE)
        assert [d.split(":")[0] for d in outside] == [f"model=cnn {column}"], outside


def test_the_tolerances_are_per_column_not_one_for_all():
    assert set(SMOKE) == set(CELL) and all(0 < t < 0.25 for t in SMOKE.values())
    # the case: an AUC of 0.79 quoted as 0.55 is no rounding of another CPU
    assert demo_results.differences(QUOTED, moved("test_auc [95% CI]", 0.786 - 0.55), SMOKE)


def test_elsewhere_a_column_without_a_tolerance_must_be_equal():
    produced = moved("threshold", 0.001)
    assert demo_results.differences(QUOTED, produced, {**SMOKE, "threshold": None}) == [
        "model=cnn threshold: quoted 0.565, produced 0.566 (no tolerance for this column: must be equal)"]


@pytest.mark.parametrize("line", ["Written by `python docs/demo_results.py smoke`.",
                                  "Written by `` (Keras 3.15.1 on tensorflow 2.21.0, 22 test images).",
                                  "written by `x` (Keras, 22 test images)."])
def test_a_malformed_written_by_line_is_an_error_not_a_pass(line):
    with pytest.raises(ValueError, match="Written by"):
        demo_results.differences(QUOTED.rsplit("\n", 1)[0] + "\n" + line, QUOTED, SMOKE)


@pytest.mark.parametrize("name", ["smoke", "demo", "demo-seeds"])
def test_the_quoted_sweep_blocks_are_well_formed(name):
    quoted = demo_results.quoted(name)
    assert quoted and demo_results.parse(quoted)["rows"]


@pytest.mark.parametrize("sweep", ["smoke", "demo"])
def test_each_tolerance_covers_the_spread_measured_for_it(sweep):
    """The tolerance column of docs/results.md's spread block is TOLERANCES, and each tolerance is at least
    the largest difference measured with another CPU's kernels and another backend (docs/spread.py)."""
    quoted = docblocks.quoted(f"{sweep}-spread", demo_results.README)
    assert quoted, f"docs/results.md has no results:{sweep}-spread block (python docs/spread.py {sweep})"
    lines = docblocks.table(quoted)
    header = docblocks.cells(lines[0])
    machine = [i for i, h in enumerate(header) if h.startswith((*spread.MACHINE, spread.ANY_TWO))]
    assert machine and header[-1].startswith("tolerance")
    rows = {cells[0]: cells for cells in map(docblocks.cells, lines[2:])}
    assert set(rows) == set(demo_results.TOLERANCES[sweep])
    for column, tolerance in demo_results.TOLERANCES[sweep].items():
        assert float(rows[column][-1]) == tolerance, column
        assert all(float(rows[column][i]) <= tolerance for i in machine), (column, rows[column])


# -- every table of figures has a generating command ---------------------------------------------

# Tables whose cells are facts, not measurements (what a config group sets, what a guarantee covers): the
# page and the first header cell. A table of figures is any other table with a number in a data row.
FACTS = {
    ("README.md", "group"): "the config groups and what they set",
    ("docs/data.md", "option"): "the data sources",
    ("docs/reliability.md", "guarantee"): "what pneumo guarantees and the test that checks each",
    ("docs/scaling.md", ""): "where the store, artifacts and jobs live at each scale",
    ("docs/sweeps.md", "sweep"): "the named sweeps",
    ("docs/trust.md", "what"): "where each trust check is computed and shown",
    ("docs/serving.md", "limit"): "what one request to the served model may hold (the code's constants)",
    ("benchmarks/README.md", "what"): "what changed in the tracked trial, before and now (its costs: the tables below)",
}


def tables(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each markdown table of a page, code fences included."""
    out, current = [], []
    for n, line in enumerate([*text.splitlines(), ""], 1):
        if line.startswith("|"):
            current.append((n, line))
        elif current:
            out.append((current[0][0], [x for _, x in current]))
            current = []
    return out


def loose(page) -> list[str]:
    """The tables of figures (a digit in a data row) of a page outside its generated blocks and not in FACTS."""
    text = page.read_text()
    spans = [(b.start, b.end) for b in docblocks.blocks(page)]
    key = page.relative_to(paths.ROOT).as_posix() if page.is_relative_to(paths.ROOT) else page.name
    return [f"{key}:{start}: {lines[0]}" for start, lines in tables(text)
            if any(re.search(r"\d", line) for line in lines[2:]) and not any(a < start < b for a, b in spans)
            and (key, docblocks.cells(lines[0])[0]) not in FACTS]


@pytest.mark.parametrize("page", docblocks.PAGES, ids=lambda p: p.relative_to(paths.ROOT).as_posix())
def test_every_table_of_figures_sits_in_a_block_that_names_its_command(page):
    found = loose(page)
    assert not found, ("tables of figures outside a `<!-- results:NAME (written by `COMMAND`) -->` block: generate "
                       "them with a script from the records, or list a table of facts in FACTS:\n" + "\n".join(found))


def test_a_typed_table_of_figures_is_found_and_a_generated_one_is_not(tmp_path):
    page = tmp_path / "page.md"
    generated = "<!-- results:x (written by `python docs/x.py`) -->\n\n| job | auc |\n|---|---|\n| a | 0.9 |\n\n" \
                "<!-- /results:x -->"
    measured = "<!-- measured:y (measured by `python benchmarks/y.py`; timings) -->\n\n| s |\n|---|\n| 1.2 |\n\n" \
               "<!-- /measured:y -->"
    typed, facts = "| job | auc |\n|---|---|\n| b | 0.8 |", "| a | b |\n|---|---|\n| x | y |"
    page.write_text(f"# t\n\n{generated}\n\n{measured}\n\n{typed}\n\n{facts}\n")
    assert loose(page) == ["page.md:19: | job | auc |"]


@pytest.mark.parametrize("found", [b for p in docblocks.PAGES for b in docblocks.blocks(p)],
                         ids=lambda b: f"{b.page.name}:{b.name}")
def test_each_block_names_a_script_here_that_writes_it(found):
    argv = shlex.split(found.command)
    script = next((a for a in argv if a.endswith(".py")), None)
    assert script and (paths.ROOT / script).is_file(), f"{found.name}: {found.command!r} names no script here"
    if "--block" in argv:
        assert argv[argv.index("--block") + 1] == found.name
    assert found.body, f"{found.name} is empty"


# -- tables whose stores are not in the repository: in the form their script writes ---------------

REAL = {"trust": "summary", "trust-small-job": "job", "trust-small-ood": "ood", "trust-small-shift": "shift",
        "trust-recipe-job": "job", "trust-recipe-referral": "referral"}


@pytest.mark.parametrize("name, kind", REAL.items())
def test_a_trust_table_is_in_the_form_its_script_writes(name, kind):
    page = trust_results.PAGES.get(name, DOCS / "trust.md")
    rows = trust_results.parse(kind, docblocks.quoted(name, page))
    assert rows
    if kind == "summary":
        assert [k for k, _ in rows] == ["subtypes", "nonxray", "films", "shift", "shift", "referral"]


def test_the_real_results_table_is_in_the_form_its_script_writes():
    rows = real_results.parse(docblocks.quoted(real_results.BLOCK, real_results.PAGE))
    assert len(rows) == 7 and all(r["minutes"] for _, r in rows)


def test_the_epochs_table_is_in_the_form_its_script_writes():
    from pneumo.record import names

    quoted = docblocks.quoted("epochs-kermany-shifted", epoch_results.PAGE)
    assert [r["trial"] for _, r in epoch_results.parse(quoted, [names.VAL_AUC, names.VAL_AUC_SHIFTED])] == ["0", "1"]


@pytest.mark.parametrize("edit", [("0.705 [0.671, 0.738]", "0.705 [0.671 0.738]"), ("50 (98.0%)", "50 (98%)"),
                                  ("| external films flagged", "| external films flaged"),
                                  ("is not reached |", "is not reached (barely) |")])
def test_a_hand_edit_of_a_trust_row_is_caught(edit):
    quoted = docblocks.quoted("trust", paths.ROOT / "README.md")
    assert edit[0] in quoted
    with pytest.raises(ValueError, match="does not write"):
        trust_results.parse("summary", quoted.replace(*edit))


# -- the scripts, run on real stores --------------------------------------------------------------


@pytest.mark.slow
def test_the_importance_example_is_what_compare_prints_now(tmp_path):
    """docs/sweeps.md's `compare --importance` example, against a fresh run of its script (job records, no
    training: seconds)."""
    quoted = docblocks.quoted("compare-importance", compare_examples.PAGE)
    fresh = compare_examples.output("importance", tmp_path)
    assert quoted == f"```\n{fresh.rstrip()}\n```", (
        f"regenerate it: python docs/compare_examples.py importance\nquoted:\n{quoted}\nnow:\n{fresh}")


@pytest.mark.slow
@pytest.mark.ci
def test_the_store_scripts_write_the_tables_the_docs_quote(smoke_copy):
    """Each script whose store is not here (the trust figures, the real results, a job's epochs), run on a real
    store (the smoke sweep's, with two `pneumo shift` runs under its latest job), writes tables that parse
    in the form the docs quote: the tests above then hold a hand edit of a quoted table to that form."""
    from test_trust_guard import not_xrays

    from pneumo.record import names

    from helpers import client_for, run_pneumo, tracking_uri
    from store_fixture import smoke_jpegs

    films, nonxray = smoke_copy / "films", smoke_copy / "nonxray"
    films.mkdir(), nonxray.mkdir()
    jpegs = smoke_jpegs(smoke_copy, 12)
    for f in jpegs:
        (films / f.name).write_bytes(f.read_bytes())
    for name, blob in not_xrays([f.read_bytes() for f in jpegs]).items():
        (nonxray / name).write_bytes(blob)
    client = client_for(smoke_copy)
    job = trust_results.records.job_run(client, "smoke")  # what the scripts read: the latest finished job
    version = client.search_model_versions(f"run_id = '{job.info.run_id}'")[0].version
    for folder in (films, nonxray):
        run_pneumo(["shift", str(folder), "--model", f"models:/{names.MODEL_NAME}/{version}"], smoke_copy,
                   hydra=False, env_extra={"MLFLOW_TRACKING_URI": tracking_uri(smoke_copy)})
    store = str(smoke_copy / "mlruns")
    written = {
        "job": trust_results.job_table(client, job),
        "ood": trust_results.ood_table(client, job, "nonxray", "films"),
        "shift": trust_results.shift_table(client, job, [("held-out films", "films"), ("photographs", "nonxray")]),
        "referral": trust_results.referral_table(client, job, [0.95, 0.97]),
        "summary": trust_results.summary_table(client, job, "smoke", "nonxray", "films", [("external set", "films")],
                                               (store, "smoke", ("held-out training films", "films")), 0.95),
    }
    for kind, lines in written.items():
        rows = trust_results.parse(kind, "\n".join(lines))
        assert len(rows) == len(lines) - 2, kind
    quoted = trust_results.parse("summary", docblocks.quoted("trust", paths.ROOT / "README.md"))
    assert [k for k, _ in trust_results.parse("summary", "\n".join(written["summary"]))] == [k for k, _ in quoted]
    rows = real_results.parse(real_results.table([store], ["smoke"]))
    assert sorted(r["job"] for _, r in rows) == ["model=cnn", "model=resnet"]
    assert epoch_results.parse(epoch_results.table(client, "smoke", [names.VAL_AUC]), [names.VAL_AUC])


def test_the_mutation_table_counts_each_status_and_leaves_the_equivalents_out_of_the_rate(tmp_path):
    """mutmut's exit codes per mutant: 1 killed, 24 timeout, 0 survived (or equivalent, when listed), 33 no test
    ran it, None never run; the rate is detected / (run - equivalent): here 2 / (5 - 1)."""
    import json

    meta = tmp_path / "pneumo" / "release" / "gates.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": {"k": 1, "t": 24, "s": 0, "e": 0, "n": 33, "r": None}}))
    (tmp_path / "pneumo" / "evaluation").mkdir()
    (tmp_path / "pneumo" / "evaluation" / "ood.py.meta").write_text(json.dumps({"exit_code_by_key": {"x": None}}))
    text = mutation_results.table(mutation_results.by_module(tmp_path, {"e"}), [
        {"scope": "pneumo.release.gates", "seconds": 600, "children": 2, "cpus": 2}])
    rows = [r for _, r in mutation_results.parse(text)]
    assert [r.pop("module") for r in rows] == ["pneumo/release/gates.py", "**pneumo/release/**", "**the modules run**"]
    assert rows[0] == rows[1] == rows[2] == {"mutants": "6", "not_run": "1", "killed": "1", "timeout": "1",
                                             "equivalent": "1", "survived": "1", "no_tests": "1", "other": "0",
                                             "rate": "50.0%"}
    assert "Not run (1 mutants): `pneumo/evaluation/ood.py`." in text and "`pneumo.release.gates` 10 min; 10 min in all." in text


def test_the_mutation_table_is_in_the_form_its_script_writes():
    rows = mutation_results.parse(docblocks.quoted(mutation_results.BLOCK, mutation_results.PAGE))
    assert rows and all(r["rate"].endswith("%") for _, r in rows)


def test_a_module_whose_every_run_mutant_is_equivalent_has_no_rate_and_does_not_stop_the_table(tmp_path):
    import json

    meta = tmp_path / "pneumo" / "release" / "gates.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": {"e": 0, "r": None}}))
    rows = [r for _, r in mutation_results.parse(mutation_results.table(mutation_results.by_module(tmp_path, {"e"}), []))]
    assert [(r["module"], r["equivalent"], r["rate"]) for r in rows] == [
        ("pneumo/release/gates.py", "1", "n/a"), ("**pneumo/release/**", "1", "n/a"), ("**the modules run**", "1", "n/a")]


def test_the_fidelity_study_measures_rank_agreement_against_each_full_fidelity():
    """docs/fidelity.py on jobs whose answer is known: a cheap fidelity that ranks the levers as the full one
    does agrees at +1, one that reverses them at -1, with no seed noise the interval is the point; a lever
    only one fidelity has is left out, and a fidelity dearer than the reference is not judged against it."""
    fidelity = _load("fidelity")
    study = sys.modules["study"]
    auc, shifted = fidelity.RANKED.values()

    def jobs(fid, values, seconds, seeds=3):
        return [study.Job(f"{fid}-{lever}-{s}", lever, str(s), fid, seconds, "c", {auc: v, shifted: -v}, {})
                for lever, v in values.items() for s in range(seeds)]

    rows = (jobs("full", {"a": 0.91, "b": 0.92, "c": 0.93, "only-full": 0.5}, 100)
            + jobs("same", {"a": 0.81, "b": 0.82, "c": 0.83}, 10)
            + jobs("reversed", {"a": 0.83, "b": 0.82, "c": 0.81, "only-cheap": 0.9}, 20)
            + jobs("dearer", {"a": 0.1, "b": 0.2, "c": 0.3}, 1000)
            + jobs("two", {"a": 0.1, "b": 0.2}, 5))
    text = fidelity.agreement_table(rows, ["two", "same", "reversed", "full", "dearer"], ["full"])
    got = {(c[0], c[1]): c[2:] for c in map(docblocks.cells, docblocks.table(text)[2:])}
    assert got == {
        ("two", "full"): ["6", "5", "n/a", "n/a"],  # two levers in common: no ranking to compare
        ("same", "full"): ["9", "10", "+1.00 [+1.00, +1.00]", "+1.00 [+1.00, +1.00]"],
        ("reversed", "full"): ["12", "20", "-1.00 [-1.00, -1.00]", "-1.00 [-1.00, -1.00]"],
        ("full", "itself: one seed vs the rest"): ["12", "100", "+1.00 [+1.00, +1.00]", "+1.00 [+1.00, +1.00]"]}


def test_two_sittings_of_the_screen_are_compared_lever_by_lever_beside_their_own_seed_noise():
    """docs/screen.py --against on sittings whose answer is known: the same order agrees at +1 and the reverse at
    -1 over the levers both sittings ran, fewer than three such levers give no rho, and the ceiling (one seed
    against the rest of this sitting) falls below +1 when this sitting's seeds disagree on the order."""
    screen = _load("screen")
    study, fidelity = sys.modules["study"], sys.modules.get("fidelity") or _load("fidelity")
    auc, shifted = fidelity.RANKED.values()

    def sitting(values: dict[str, list[float]]):
        return [study.Job(f"{lever}-{s}", lever, str(s), "", 60.0, "c", {auc: v, shifted: v}, {})
                for lever, per_seed in values.items() for s, v in enumerate(per_seed)]

    def table(this, other):
        return [docblocks.cells(row)[1:] for row in docblocks.table(screen.sittings_table(sitting(this), sitting(other)))[2:]]

    ordered = {"a": [0.91] * 3, "b": [0.92] * 3, "c": [0.93] * 3}
    exact = ["+1.00 [+1.00, +1.00]"]
    assert table(ordered, {**ordered, "only-there": [0.5] * 3}) == [["3", *exact, *exact]] * 2
    assert table(ordered, {"a": [0.93] * 3, "b": [0.92] * 3, "c": [0.91] * 3}) == [
        ["3", "-1.00 [-1.00, -1.00]", *exact]] * 2
    assert table(ordered, {"a": [0.91] * 3, "b": [0.92] * 3}) == [["2", "n/a", *exact]] * 2
    quarrelling = {"a": [0.93, 0.91, 0.91], "b": [0.92] * 3, "c": [0.91, 0.93, 0.93]}  # seed 0 reverses the others
    ceiling = table(quarrelling, ordered)[0][2]
    assert float(ceiling.split()[0]) < 1 and ceiling.split()[1] == "[-1.00,", ceiling


def test_the_cross_architecture_average_is_tested_seed_by_seed_against_the_resnet_alone():
    """docs/screen.py's paired test on differences whose answer is known: +0.001, +0.002, +0.003 (mean +0.002, Student's
    half-width 0.0025 with 3 seeds) holds zero, so tied; the same shifted up by 0.001 excludes it, so better; shifted
    down, worse. A single seed is shown but not tested."""
    screen = _load("screen")
    auc, test_auc = screen.names.MODEL_VAL_AUC, screen.names.TEST_AUC

    def verdict(diffs):
        pairs = [(str(s), {auc: 0.99, test_auc: 0.97}, {auc: 0.99 + d, test_auc: 0.96}) for s, d in enumerate(diffs)]
        rows = [docblocks.cells(r) for r in docblocks.table(screen.paired_table(pairs))[2:]]
        assert [r[0] for r in rows[:len(diffs)]] == [str(s) for s in range(len(diffs))]
        assert rows[0][4:] == ["0.970", "0.960"]
        return rows[-1][3] if len(rows) > len(diffs) else None

    assert verdict([0.001, 0.002, 0.003]) == "+0.0020 [-0.0005, +0.0045] tied"
    assert verdict([0.002, 0.003, 0.004]) == "+0.0030 [+0.0005, +0.0055] better"
    assert verdict([-0.002, -0.003, -0.004]) == "-0.0030 [-0.0055, -0.0005] worse"
    assert verdict([0.002]) is None


def test_one_lever_at_several_image_sizes_is_a_row_per_size_tested_against_the_reference_size():
    """docs/screen.py --by-fidelity: the jobs grouped by fidelity, the reference size has no test, another size whose
    seeds all lie above the reference's is better, and the header names what the rows are."""
    screen = _load("screen")
    study = sys.modules["study"]
    shifted = screen.RANKED

    def jobs(fid, values):
        return [study.Job(f"{fid}-{s}", "baseline", str(s), fid, 60.0, "c", {shifted: v, screen.names.TEST_AUC: 0.97}, {})
                for s, v in enumerate(values)]

    groups = screen.by_lever(jobs("size=128", [0.990, 0.991, 0.992]) + jobs("size=160", [0.995, 0.996, 0.997]), "fidelity")
    assert sorted(groups) == ["size=128", "size=160"]
    lines = docblocks.table(screen.levers_table(groups, "size=128", "fidelity"))
    assert docblocks.cells(lines[0])[:5] == ["fidelity", "seeds", "val AUC", "shifted val AUC", "shifted vs size=128 [95% Welch]"]
    rows = {c[0]: c for c in map(docblocks.cells, lines[2:])}
    assert rows["size=128"][4] == "-"
    assert rows["size=160"][4].endswith("better") and rows["size=160"][4].startswith("+0.0050")
