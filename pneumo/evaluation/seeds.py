"""Seed noise: a configuration's metric over its seeds, and whether its difference from the best
configuration is larger than that noise.

A configuration trained with n seeds is a sample of n values. Its interval is Student's t on the
mean. Two configurations are compared by Welch's t interval on the difference of their means
(unequal variances, Welch-Satterthwaite degrees of freedom): a configuration is *tied* with the best
when that interval, at the given confidence, contains 0, i.e. its difference is not told apart from
seed noise. One seed has no spread, so a configuration with one seed is not tested.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Spread:
    """A configuration's metric over its seeds; sd and the interval are None with one seed."""

    n: int
    mean: float
    sd: float | None  # the sample standard deviation (ddof=1)
    low: float | None  # Student's t interval on the mean
    high: float | None


@dataclass(frozen=True)
class Difference:
    """other's mean - best's mean, with Welch's t interval; tied when the interval contains 0."""

    difference: float
    low: float
    high: float
    df: float | None  # Welch-Satterthwaite degrees of freedom; None when neither varies over its seeds
    tied: bool


def spread(values: Sequence[float], confidence: float) -> Spread:
    n = len(values)
    if n == 0:
        raise ValueError("no values: a spread needs at least one seed")
    mean = math.fsum(values) / n
    if n == 1:
        return Spread(1, mean, None, None, None)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * sd / math.sqrt(n)
    return Spread(n, mean, sd, mean - half, mean + half)


def versus(best: Spread, other: Spread, confidence: float) -> Difference | None:
    """Welch's t interval on other.mean - best.mean; None when either has one seed (no spread to test against)."""
    if best.n < 2 or other.n < 2:
        return None
    d = other.mean - best.mean
    var_best, var_other = best.sd**2 / best.n, other.sd**2 / other.n
    if var_best + var_other == 0:  # every seed gave the same number, in both: only equal means are a tie
        return Difference(d, d, d, None, d == 0)
    df = (var_best + var_other) ** 2 / (var_best**2 / (best.n - 1) + var_other**2 / (other.n - 1))
    half = stats.t.ppf((1 + confidence) / 2, df) * math.sqrt(var_best + var_other)
    return Difference(d, d - half, d + half, df, d - half <= 0 <= d + half)


def pooled_sd(spreads: Sequence[Spread]) -> float | None:
    """The seed noise of a sweep: the within-configuration SD pooled over configurations with 2+ seeds."""
    tested = [s for s in spreads if s.n > 1]
    dof = sum(s.n - 1 for s in tested)
    return math.sqrt(math.fsum((s.n - 1) * s.sd**2 for s in tested) / dof) if dof else None
