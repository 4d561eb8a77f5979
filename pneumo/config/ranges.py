"""The range of a number in the config, declared beside its type in pneumo/config/schema.py.

A schema field that takes a number says which ones it takes, in interval notation:

    epochs: int = within("[1, inf)")
    val_fraction: float = within("(0, 1)")

`within` is a dataclass field whose default stays MISSING (values live in conf/ only); the range
rides in the field's metadata, where the start-up check (pneumo.config.checks) reads it. It sits
in the metadata, not in a `__post_init__`: Hydra composes a structured config without ever calling
the dataclass's constructor, so a `__post_init__` would never run. `inf` ends are open and every
value must be finite: NaN and infinity are never in range.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from omegaconf import MISSING

KEY = "pneumo_range"  # the metadata key of a field's Range

_INTERVAL = re.compile(r"^\s*([\[(])\s*(-?inf|[-+0-9.e]+)\s*,\s*(inf|[-+0-9.e]+)\s*([\])])\s*$")


@dataclass(frozen=True)
class Range:
    low: float  # -inf: no lower end
    high: float  # inf: no upper end
    low_open: bool
    high_open: bool
    whole: bool = False  # integers only (a field typed Any, which OmegaConf does not type-check)

    def __contains__(self, value) -> bool:
        if not is_number(value) or (self.whole and not isinstance(value, int)):
            return False  # NaN fails every comparison below, infinity the open end at inf
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        kind = "an integer" if self.whole else "a number"
        low, high = _number(self.low), _number(self.high)
        if math.isinf(self.low) and math.isinf(self.high):
            return f"any finite number{' (an integer)' if self.whole else ''}"
        if math.isinf(self.high):
            return f"{kind} {'>' if self.low_open else '>='} {low}"
        if not (self.low_open or self.high_open):
            return f"{kind} from {low} to {high}"
        lower = f"{'>' if self.low_open else '>='} {low} and " if not math.isinf(self.low) else ""
        return f"{kind} {lower}{'<' if self.high_open else '<='} {high}"


def parse(interval: str, whole: bool = False) -> Range:
    """'[1, inf)' -> Range(1, inf, closed, open); a malformed or empty interval raises ValueError."""
    m = _INTERVAL.match(interval)
    if not m:
        raise ValueError(f"not an interval: {interval!r} (write e.g. '[0, 1)' or '(0, inf)')")
    low, high = float(m[2]), float(m[3])
    r = Range(low, high, m[1] == "(" or math.isinf(low), m[4] == ")" or math.isinf(high), whole)
    if low > high or (low == high and (r.low_open or r.high_open)):
        raise ValueError(f"empty interval: {interval!r}")
    return r


def within(interval: str, *, whole: bool = False, default=MISSING):
    """A schema field whose numbers lie in `interval`; `default` is MISSING (the YAML sets it) or None on
    an Optional field ("not set")."""
    return dataclasses.field(default=default, metadata={KEY: parse(interval, whole)})


def of(field: dataclasses.Field) -> Range | None:
    return field.metadata.get(KEY)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(x: float) -> str:
    return str(int(x)) if x.is_integer() else repr(x)
