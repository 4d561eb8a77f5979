"""The start-up check of a composed config: everything that can be wrong with it, found before any
data is loaded, any model built or anything recorded, each as one ConfigError naming the key.

Composition already refuses a misspelled key, an unknown option and a wrong type (the schemas in
pneumo.config.schema). This refuses what composition lets through: a value left `???`, a key added
with `+`, a search space that is not one, a number outside its field's range (`within(...)` in the
schema; for a space, any value it can pick), and the few combinations of keys that cannot work.
Imports neither Keras nor MLflow: it runs in the second or so after Hydra composes the config.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import fields, is_dataclass

from omegaconf import DictConfig, OmegaConf

from pneumo.config import ranges, schema, space
from pneumo.config.errors import ConfigError

SPACE_GROUPS = ("model", "optimizer", "augmentation")  # groups whose keys may hold a search space


def check(cfg) -> None:
    """Raise ConfigError, naming the key, for the first thing wrong with `cfg` (a composed job config)."""
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not str(k).startswith("hydra."))
    if missing:
        raise ConfigError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
                          f"pass {missing[0]}=VALUE (the config leaves it ???)")
    known_top = {f.name for f in fields(schema.Config)} | {"hydra"}
    for key in cfg:
        if key not in known_top:
            raise ConfigError(f"{key}: unknown config key; known: {sorted(known_top - {'hydra'})}")
    groups = {g: _schema_of(cfg, g, _fallback(cfg, g)) for g in cfg if g != "hydra"}
    for group, cls in groups.items():
        if cls is not None:
            _refuse_unknown(cfg[group], cls, group)
    for group in SPACE_GROUPS:
        if isinstance(cfg.get(group), DictConfig):
            space.validate(cfg[group], group)
    _check_ranges(cfg, schema.Config, "")
    for group, cls in groups.items():
        if cls is not None:
            _check_ranges(cfg[group], cls, f"{group}.")
    _check_combinations(cfg)


def _fallback(cfg, group: str):
    if group == "model" and not OmegaConf.is_missing(cfg, group) and isinstance(cfg.model, DictConfig):
        return schema.MODEL_SCHEMAS.get(str(cfg.model.get("_target_", "")).rsplit(".", 1)[-1])
    return schema.GROUP_SCHEMAS.get(group)


def _schema_of(node, key, fallback):
    """The dataclass node[key] was typed by (a composed node keeps its schema's type), else `fallback`;
    None for a key that is unset, None or not a mapping."""
    if OmegaConf.is_missing(node, key) or not isinstance(node[key], DictConfig):
        return None
    typ = OmegaConf.get_type(node, key)
    return typ if typ is not None and is_dataclass(typ) else fallback


def _refuse_unknown(node, cls, where: str) -> None:
    allowed = {f.name for f in fields(cls)}
    for key in node:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown key; {where} takes {sorted(allowed - {'_target_'})}")
    for f in fields(cls):
        sub = _schema_of(node, f.name, None)
        if sub is not None:
            _refuse_unknown(node[f.name], sub, f"{where}.{f.name}")


def _check_ranges(node, cls, prefix: str) -> None:
    """Every field of `cls` in `node` that declares a range, and the nested schemas (trainer.early_stopping)."""
    for f in fields(cls):
        if f.name not in node:
            continue
        sub = _schema_of(node, f.name, None)
        if sub is not None and prefix:  # top-level groups are walked by `check`
            _check_ranges(node[f.name], sub, f"{prefix}{f.name}.")
        allowed = ranges.of(f)
        value = node[f.name]
        if allowed is None or value is None:
            continue
        if f.type in ("int", "Optional[int]"):  # OmegaConf has made it one: say so in the message
            allowed = dataclasses.replace(allowed, whole=True)
        key = f"{prefix}{f.name}"
        if space.is_space(value):
            _check_space(key, space.plain(value), allowed)
        elif value not in allowed:
            raise ConfigError(f"{key}: {_show(value)} is out of range; use {allowed}")


def _check_space(key: str, spec: dict, allowed: ranges.Range) -> None:
    """Every value the space can pick lies in the field's range (a space's ends and choices are its extremes)."""
    if allowed.whole and "float" in spec:
        raise ConfigError(f"{key}: takes whole numbers; a float space picks fractions: use {{int: [lo, hi]}}")
    values = list(spec["choice"]) if "choice" in spec else list(spec.get("int") or spec.get("float"))
    values += [spec["default"]] if "default" in spec else []
    for value in values:
        if value not in allowed:
            raise ConfigError(f"{key}: the space {_show(spec)} can pick {_show(value)}, out of range; "
                              f"every value must be {allowed}")
    step = spec.get("step")
    if step is not None and not (ranges.is_number(step) and step > 0):
        raise ConfigError(f"{key}: step {_show(step)} in {_show(spec)}; use a step > 0 (or none)")


def _check_combinations(cfg) -> None:
    """Keys that are each in range but cannot work together."""
    data, ev, trainer = cfg.data, cfg.evaluation, cfg.trainer
    if trainer.lr_schedule is not None and trainer.reduce_lr is not None:
        raise ConfigError("trainer.lr_schedule and trainer.reduce_lr both set the learning rate: set one to null")
    if data.val_fraction + data.test_fraction >= 1:
        raise ConfigError(f"data.val_fraction + data.test_fraction = {data.val_fraction} + {data.test_fraction} "
                          "leaves no training films; keep their sum below 1")
    # a percentile interval needs at least one draw beyond each of its ends: 2 / (1 - confidence) in all
    # (40 at 0.95); fewer and the CI's ends are the extreme draws themselves, whatever the confidence says
    least = math.ceil(2 / (1 - ev.confidence) - 1e-9)
    if ev.bootstrap < least:
        raise ConfigError(f"evaluation.bootstrap: {ev.bootstrap} resamples cannot give a {ev.confidence:g} "
                          f"interval; use at least {least} (2 / (1 - evaluation.confidence))")


def _show(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)
