"""What a failed trial says: one line, naming the config keys behind the failure where they are known.

A trial's error tag and the job's last message are the last line of a traceback. When the
hyperparameters a search picked cannot build a model (a CNN with more pooling blocks than the
image has pixels to halve), the line names the keys that break it: the start-up check built the
model once with every space's default, so the keys that broke this one are among those whose
values differ from the defaults, and each is tried alone to find which. Imports no framework: the
job reads its final message from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from pneumo.config.space import plain

# A traceback's last line starts with the exception's (qualified) class name.
_CLASS = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*: ")
LONGEST = 300  # characters of a library's error kept in a one-line message


def error_line(text: str) -> str:
    """The last line of a traceback (or any message), without its exception class, on one line."""
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    last = _CLASS.sub("", lines[-1].strip()) if lines else ""
    return " ".join(last.replace("\x1b[1m", "").replace("\x1b[0m", "").split())[:LONGEST]


def last_failure(tuner) -> str:
    """The error of the search's last failed trial, as one line ('' when none failed)."""
    oracle = tuner.oracle
    failed = [oracle.trials[t] for t in getattr(oracle, "end_order", []) if str(oracle.trials[t].status) != "COMPLETED"]
    return error_line(failed[-1].message or "") if failed else ""


def unbuildable(hypermodel, space, values: Mapping, build: Callable, error: Exception) -> str:
    """One line: which values of which keys do not build a model at this image size, and where to change them.

    `space` holds every hyperparameter at its default (`oracle.get_space()`), which built at start-up;
    `build(hp)` builds a model or raises ValueError / TypeError, as the failed build did."""
    def builds(changes: Mapping) -> bool:
        probe = space.copy()
        probe.values.update(changes)
        try:
            build(probe)
        except (ValueError, TypeError):
            return False
        return True

    values = {k: v for k, v in values.items() if "/" not in k}  # not Hyperband's tuner/* bookkeeping
    keys = culprits(values, space.values, builds)
    picked = ", ".join(f"{k}={values[k]}" for k in keys) or "the hyperparameters"
    groups = hypermodel.groups
    spaces = [f"{k}: {plain(groups[g][n])}" for k in keys if (g := k.partition(".")[0]) in groups
              and (n := k.partition(".")[2]) in groups[g]]
    return (f"{picked} {'does' if len(keys) == 1 else 'do'} not build a model at trainer.image_size="
            f"{hypermodel.image_size}: {error_line(str(error))}"
            + (f" (narrow the space in the config: {'; '.join(spaces)})" if spaces else ""))


def culprits(values: Mapping, defaults: Mapping, builds: Callable[[Mapping], bool]) -> list[str]:
    """The keys whose value alone (the others at their defaults) keeps a model from building; when none
    does alone, every key whose value differs from its default (together they do)."""
    changed = [k for k, v in values.items() if k in defaults and v != defaults[k]]
    alone = [k for k in changed if not builds({k: values[k]})]
    return alone or changed
