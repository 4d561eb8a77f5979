"""The defaults a command shows without composing a job: read from conf/, the only place they live."""

from __future__ import annotations

from functools import cache

from omegaconf import OmegaConf

from pneumo.config import paths
from pneumo.config.space import is_space


@cache
def option(group: str, name: str):
    """conf/<group>/<name>.yaml as a DictConfig (its defaults list left out)."""
    node = OmegaConf.load(paths.CONF_DIR / group / f"{name}.yaml")
    node.pop("defaults", None)
    return node


def values(group: str, name: str, **changes) -> dict:
    """conf/<group>/<name>.yaml as the plain keyword arguments its builder takes: each search space at
    its default, `_target_` left out, `changes` applied (for code that builds a model without a job)."""
    node = OmegaConf.to_container(option(group, name), resolve=True)
    node.pop("_target_", None)
    return {**{k: v["default"] if is_space(v) else v for k, v in node.items()}, **changes}
