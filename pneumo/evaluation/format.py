"""How a number and its confidence interval read, everywhere a person reads them: the leaderboard,
the model card, `pneumo evaluate`, rerun verdicts and the generated tables in docs/.

Three decimals for metrics (AUC 0.950), a missing or non-finite value as "-".
"""

from __future__ import annotations

from pneumo.record.names import ci_names, finite

DIGITS = 3
MISSING = "-"


def number(value, digits: int = DIGITS, missing: str = MISSING) -> str:
    """0.95 -> '0.950'; None, NaN or text that is no number -> '-'."""
    v = finite(value)
    return missing if v is None else f"{v:.{digits}f}"


def interval(value, low, high, digits: int = DIGITS, sep: str = " ", missing: str = MISSING) -> str:
    """'0.950 [0.920, 0.970]' (the bounds dropped when either is missing); `sep` goes before the bracket."""
    if finite(value) is None:
        return missing
    bounds = f"{sep}[{number(low, digits)}, {number(high, digits)}]" if None not in (finite(low), finite(high)) else ""
    return number(value, digits) + bounds


def metric(row, name: str, digits: int = DIGITS, sep: str = " ", missing: str = MISSING) -> str:
    """`name` with its logged CI bounds (name_ci_low, name_ci_high) from a mapping of metrics."""
    low, high = (row.get(b) for b in ci_names(name))
    return interval(row.get(name), low, high, digits, sep, missing)


def value(v) -> str:
    """A hyperparameter or a decision's number as text: floats to 4 significant digits, the rest as is."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)
