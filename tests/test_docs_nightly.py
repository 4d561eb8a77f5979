"""The docs' tables that a fresh run checks but CI cannot afford: the demo sweep (~3.5 min on 2 CPU cores)
and the toy seed sweep behind docs/sweeps.md's compare example (6 toy jobs). Run nightly, or before
changing what they quote: `make nightly` (PNEUMO_NIGHTLY=1); skipped otherwise, CI included.

The demo table is held to demo_results.TOLERANCES["demo"] (measured by docs/spread.py); the compare example
is seed noise on 48 films, so only its form is held: the same lines, configurations and verdicts, every
number replaced by a placeholder.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys

import pytest

from pneumo.config import paths

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.environ.get("PNEUMO_NIGHTLY") != "1",
                                                   reason="nightly (minutes of training): make nightly")]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, paths.ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.setdefault(name, module)
    return module


demo_results, compare_examples, docblocks = (_load(n) for n in ("demo_results", "compare_examples", "docblocks"))


def test_the_demo_table_is_what_a_fresh_demo_sweep_produces(tmp_path):
    quoted = demo_results.quoted("demo")
    produced = demo_results.block(demo_results.run_sweep("demo", tmp_path), "demo", "python docs/demo_results.py demo")
    assert demo_results.differences(quoted, produced, demo_results.TOLERANCES["demo"]) == [], (
        f"regenerate it: python docs/demo_results.py demo\nquoted:\n{quoted}\nnow:\n{produced}")


def test_the_compare_seeds_example_has_the_form_a_fresh_toy_sweep_prints(tmp_path):
    def form(text: str) -> list[str]:
        lines = [re.sub(r"[-+]?\d+\.\d+|\b\d+\b|(?<=augmentation=)\w+", "#", line)
                 for line in text.strip().strip("`").strip().splitlines()]  # which configuration ranks first is noise too
        return [re.sub(r" +", " ", re.sub(r"-+", "-", line)).strip() for line in lines]  # column widths follow numbers

    quoted = docblocks.quoted("compare-seeds", compare_examples.PAGE)
    fresh = compare_examples.output("seeds", tmp_path)
    assert form(quoted) == form(fresh), f"regenerate it: python docs/compare_examples.py seeds\nnow:\n{fresh}"
