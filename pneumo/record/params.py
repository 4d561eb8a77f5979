"""A job's config as MLflow params, and the keys that identify a job and its configuration."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from pneumo.config.keys import is_seed, job_config, neutral, part_of_job
from pneumo.config.space import is_space, plain
from pneumo.record import names
from pneumo.record.redact import REDACTED, SECRET_KEY, redact_config, scrub

PARAM_MAX = 6000  # MLflow's limit on a param value, in characters


def flatten(node, prefix: str = "") -> dict[str, str]:
    """Dotted params from a nested config; search spaces kept as compact JSON."""
    out: dict[str, str] = {}
    items = node.items() if isinstance(node, Mapping) else []
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not is_space(value):
            out.update(flatten(value, name + "."))
        elif SECRET_KEY.search(str(key)):
            out[name] = REDACTED
        else:
            text = value if isinstance(value, str) else json.dumps(plain(value))
            out[name] = scrub(str(text))[:PARAM_MAX]
    return out


def redacted(plain: Mapping) -> dict[str, str]:
    """A resolved config as the params and the config artifact a job logs it: credentials redacted, flattened."""
    return flatten(redact_config(plain))


def job_key(cfg_plain: Mapping, *digests: str) -> str:
    """Stable identity of a job: the part of its config that decides what is trained
    (pneumo.config.keys), and the digests of the data it is trained and tested on."""
    blob = json.dumps([job_config(cfg_plain), *digests], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def config_key(params: Mapping[str, str], *digests: str) -> str:
    """Identity of a job's configuration: its job key without the seeds, so that the jobs of one
    configuration trained with different seeds share it. From the flat params the job logs (`flatten`),
    so that it is computed again, to the same value, from the params of jobs recorded before the tag."""
    kept = {k: v for k, v in params.items()
            if part_of_job(k) and not is_seed(k) and not k.startswith(names.BEST_HP_PREFIX) and not neutral(k, v)}
    blob = json.dumps([kept, *digests], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
