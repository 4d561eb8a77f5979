"""The guard on docs/results.md's generated tables (docs/demo_results.py `differences`): the structure must
match everywhere, the numbers exactly on the machine that wrote them and within a tolerance elsewhere."""

from __future__ import annotations

import importlib.util

import pytest

from pneumo.config import paths

_spec = importlib.util.spec_from_file_location("demo_results", paths.ROOT / "docs" / "demo_results.py")
demo_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo_results)

HERE = "Keras 3.15.1 on tensorflow 2.21.0, cpu: AMD EPYC (2 cores, avx512f)"
ELSEWHERE = "Keras 3.16.0 on tensorflow 2.22.0, cpu: Intel Xeon (2 cores, avx2)"


def block(rows: list[str], ran_on: str = HERE, images: int = 22) -> str:
    return "\n".join(["| job | val_auc | test_auc [95% CI] | threshold |", "|---|---|---|---|", *rows, "",
                      f"Written by `python docs/demo_results.py smoke` ({ran_on}, {images} test images)."])


QUOTED = block(["| model=resnet | 0.758 | 0.500 [0.000, 0.868] | 0.332 |",
                "| model=cnn | 0.758 | 0.786 [0.555, 1.000] | 0.565 |"])


def test_the_same_block_agrees():
    assert demo_results.differences(QUOTED, QUOTED) == []


def test_a_removed_row_is_a_difference_on_any_machine():
    produced = block(["| model=cnn | 0.758 | 0.786 [0.555, 1.000] | 0.565 |"])
    for ran_on in (HERE, ELSEWHERE):
        found = demo_results.differences(QUOTED, block(produced.splitlines()[2:3], ran_on))
        assert any(d.startswith("jobs:") for d in found), found


def test_another_test_image_count_is_a_difference_on_any_machine():
    produced = QUOTED.replace("22 test images", "21 test images").replace(HERE, ELSEWHERE)
    assert any(d.startswith("test images") for d in demo_results.differences(QUOTED, produced))


def test_on_the_same_machine_the_last_digit_counts():
    produced = QUOTED.replace("0.565", "0.566")
    assert demo_results.differences(QUOTED, produced) == [
        "model=cnn threshold: quoted 0.565, produced 0.566 (same machine and versions: must be equal)"]


def test_elsewhere_numbers_hold_within_the_stated_tolerance():
    near = QUOTED.replace(HERE, ELSEWHERE).replace("0.786 [0.555", "0.800 [0.555")
    assert demo_results.differences(QUOTED, near) == []
    far = near.replace("0.800 [0.555", f"{0.786 + demo_results.TOLERANCE + 0.01:.3f} [0.555")
    assert [d.split(":")[0] for d in demo_results.differences(QUOTED, far)] == ["model=cnn test_auc [95% CI]"]


@pytest.mark.parametrize("line", ["Written by `python docs/demo_results.py smoke`.",
                                  "Written by `` (Keras 3.15.1 on tensorflow 2.21.0, 22 test images).",
                                  "written by `x` (Keras, 22 test images)."])
def test_a_malformed_written_by_line_is_an_error_not_a_pass(line):
    with pytest.raises(ValueError, match="Written by"):
        demo_results.differences(QUOTED.rsplit("\n", 1)[0] + "\n" + line, QUOTED)


def test_the_quoted_smoke_block_is_well_formed():
    quoted = demo_results.quoted("smoke")
    assert quoted and demo_results.parse(quoted)["rows"]
