"""Search spaces declared in YAML, turned into Keras Tuner `hp` calls.

A config value is either a plain value (fixed) or one of:
    {choice: [a, b, c]}                       -> hp.Choice
    {int: [lo, hi], step: 1}                  -> hp.Int
    {float: [lo, hi], step: 0.1 | log: true}  -> hp.Float
each with an optional `default` (the value a plain build uses). Builders
never see `hp`: `resolve` hands them plain values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pneumo.config.errors import ConfigError

KINDS = ("choice", "int", "float")
OPTIONS = {"default", "step", "log"}


def is_space(value: Any) -> bool:
    return isinstance(value, Mapping) and any(k in value for k in KINDS)


def check(name: str, spec: Mapping) -> None:
    kinds = [k for k in KINDS if k in spec]
    unknown = set(spec) - set(KINDS) - OPTIONS
    if len(kinds) != 1 or unknown:
        raise ConfigError(
            f"{name}: a search space needs exactly one of {KINDS} and only {sorted(OPTIONS)}; got {dict(spec)}"
        )
    kind, arg = kinds[0], spec[kinds[0]]
    if kind == "choice":
        if isinstance(arg, (str, bytes)) or not hasattr(arg, "__len__") or len(arg) == 0:
            raise ConfigError(f"{name}: choice needs a non-empty list of values")
        if "default" in spec and spec["default"] not in list(arg):
            raise ConfigError(f"{name}: default {spec['default']!r} is not one of the choices {list(arg)}")
        return
    if isinstance(arg, (str, bytes)) or not hasattr(arg, "__len__") or len(arg) != 2:
        raise ConfigError(f"{name}: {kind} needs a range [min, max]; got {arg!r}")
    lo, hi = arg
    if lo > hi:
        raise ConfigError(f"{name}: {kind} range has min {lo} > max {hi}")
    if spec.get("log") and lo <= 0:
        raise ConfigError(f"{name}: log sampling needs min > 0; got {lo}")
    if "default" in spec and not lo <= spec["default"] <= hi:
        raise ConfigError(f"{name}: default {spec['default']} is outside [{lo}, {hi}]")


def pick(hp, name: str, spec: Mapping) -> Any:
    """Declare one space on `hp` and return the value it picks."""
    check(name, spec)
    default = spec.get("default")
    if "choice" in spec:
        return hp.Choice(name, list(spec["choice"]), default=default)
    if "int" in spec:
        lo, hi = (int(v) for v in spec["int"])
        return hp.Int(name, lo, hi, step=spec.get("step") or 1, default=default)
    lo, hi = (float(v) for v in spec["float"])
    sampling = "log" if spec.get("log") else "linear"
    return hp.Float(name, lo, hi, step=spec.get("step"), sampling=sampling, default=default)


def resolve(hp, node: Mapping, prefix: str) -> dict[str, Any]:
    """Plain keyword arguments for one config group: spaces picked, None dropped.

    None means "the library's default" (e.g. an optimizer argument that the
    chosen optimizer does not take), so it is not passed on at all.
    """
    out = {}
    for key, value in node.items():
        if value is None:
            continue
        out[key] = pick(hp, f"{prefix}.{key}", value) if is_space(value) else plain(value)
    return out


def validate(node: Mapping, prefix: str) -> None:
    """Check every space of a group before any training starts."""
    for key, value in node.items():
        if is_space(value):
            check(f"{prefix}.{key}", value)


def plain(value: Any) -> Any:
    """Plain dicts and lists from OmegaConf nodes (or anything mapping- and list-like)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):  # list, tuple, ListConfig
        return [plain(v) for v in value]
    return value
