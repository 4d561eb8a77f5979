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


def _keras_json_backend() -> str | None:
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    try:
        return json.loads((Path(home) / "keras.json").read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
