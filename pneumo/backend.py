"""The Keras backend pneumo runs on: chosen at install time, named in what pneumo records.

`pip install -e ".[jax]"` (or `[tensorflow]`, `[torch]`) installs one; `KERAS_BACKEND`
picks among several. Import-light: nothing here imports Keras or a backend.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

# Distributions that a model trained on each backend needs to be loaded and run again.
PACKAGES = {"tensorflow": ("tensorflow",), "jax": ("jax", "jaxlib"), "torch": ("torch",)}
PREFERENCE = ("tensorflow", "jax", "torch")  # Keras' own default first


def choose() -> str | None:
    """Set KERAS_BACKEND when it is unset and Keras' own choice is not installed.

    Keras uses KERAS_BACKEND, else the backend in its keras.json (which it writes on first
    import, with tensorflow), else tensorflow. In an environment installed with `.[jax]` that
    fails at `import keras`; pneumo then picks the first installed of tensorflow, jax, torch.
    Returns what it set, or None when it left the choice to Keras.
    """
    if os.environ.get("KERAS_BACKEND"):
        return None
    configured = _keras_json_backend() or "tensorflow"
    if configured not in PACKAGES or find_spec(configured) is not None:
        return None
    for name in PREFERENCE:
        if find_spec(name) is not None:
            os.environ["KERAS_BACKEND"] = name
            return name
    return None  # none installed: Keras' import error names the one it wanted


def packages(backend: str) -> dict[str, str]:
    """{distribution: version} of the backend's packages, as pip would install them again.

    A local version label (torch's `+cpu`, `+cu128`) is dropped: no package index serves it.
    """
    out = {}
    for dist in PACKAGES.get(backend, ()):
        try:
            out[dist] = version(dist).split("+", 1)[0]
        except PackageNotFoundError:
            continue
    return out


def accelerators() -> list[str]:
    """The GPUs the running Keras backend sees, by name, asked of the backend itself (imports it)."""
    import keras

    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_physical_devices("GPU")]
    if name == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform not in ("cpu", "tpu")]
    if name == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def jit_compile(setting):
    """trainer.jit_compile as Keras should get it. Under TensorFlow, Keras' "auto" compiles with XLA
    whenever the layers allow it; on a CPU that made a resnet epoch 1.8x the CPU time of plain
    TensorFlow (TF 2.21, 2 cores: benchmarks/README.md), so there pneumo's "auto" is XLA only where
    there is an accelerator. (JAX always compiles, and must: its "auto" is left to Keras.)"""
    import keras

    if setting != "auto" or keras.backend.backend() != "tensorflow":
        return setting
    return "auto" if accelerators() else False


def _keras_json_backend() -> str | None:
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    try:
        return json.loads((Path(home) / "keras.json").read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
