"""Which config keys are part of a job (they decide what is trained and how it is measured) and which
only say where things go or how the job is driven. One list, read by the job's identity (its key),
its run name, and `pneumo rerun` (which may add only these)."""

from __future__ import annotations

import json
from collections.abc import Mapping

# Where things go (store, cache, outputs, the data's location: its content is identified by digest),
# and how a job is driven (resume, rerun, distributed roles, Keras' eager debugging switch): never what
# is trained.
NOT_PART_OF_JOB = ("paths", "tracking", "hydra", "distributed", "restart", "rerun_of", "experiment",
                   "data.root", "data.test_root", "data.cache_dir", "trainer.run_eagerly")


# Keys added after stores existed, at the value that changes nothing: a job with the key at this value is
# the job it was before the key existed, so it keeps its identity (its key) and old stores resume.
NEUTRAL = {"data.train_fraction": 1.0, "trainer.label_smoothing": 0.0, "trainer.clahe": None,
           "trainer.lr_schedule": None, "optimizer.use_ema": None, "optimizer.ema_momentum": None,
           "evaluation.tta": None}


def neutral(key: str, value) -> bool:
    """Is `value` (as configured, or as a logged param's text: JSON) the neutral value of a key added later?"""
    if key not in NEUTRAL:
        return False
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return False
    return value == NEUTRAL[key]


def part_of_job(key: str) -> bool:
    """Is the dotted key (`model.filters`, `+trainer.epochs`, `~data.root`) part of what the job trains?"""
    key = key.lstrip("+~")
    return not any(key == k or key.startswith(k + ".") for k in NOT_PART_OF_JOB)


def job_config(plain: Mapping, prefix: str = "") -> dict:
    """The resolved config without the keys that are not part of the job."""
    out = {}
    for k, v in plain.items():
        name = f"{prefix}{k}"
        if not part_of_job(name) or neutral(name, v):
            continue
        out[k] = job_config(v, name + ".") if isinstance(v, Mapping) else v
    return out


# The seeds a sweep repeats a configuration with (tuner.seed interpolates `seed`): part of the job,
# not of its configuration. Jobs that differ only in these are one configuration (`pneumo compare`).
SEEDS = ("seed", "tuner.seed")
SEEDED = (SEEDS[0], "data.seed", SEEDS[1], "evaluation.seed")  # every seed a job's numbers depend on (its seeds tag)


def is_seed(key: str) -> bool:
    return key.lstrip("+~") in SEEDS
