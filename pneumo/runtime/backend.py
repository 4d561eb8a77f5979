"""The Keras backend pneumo runs on: chosen at install time, named in what pneumo records.

`pip install -e ".[jax]"` (or `[tensorflow]`, `[torch]`) installs one; `KERAS_BACKEND`
picks among several. Import-light: nothing here imports Keras or a backend until a
function that needs one (`determinism`, `device`) is called.
"""

from __future__ import annotations

import json
import os
import platform
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


def determinism(on: bool) -> str:
    """Make the backend's ops deterministic (or not), for this process: what the job ran under.

    Process-wide, so every job sets it, on or off: the jobs of one multirun share a process.
    Returns the value of the job's `pneumo.deterministic` tag: "true", "false", or why it
    could not be had. Keras seeds what it draws (`keras.utils.set_random_seed`); these switches
    are about the kernels: GPU reductions and convolutions that may add in any order.
    """
    import keras

    name = keras.backend.backend()
    if name == "tensorflow":
        # Public switch on, private one off (TF has no public disable). Keras then turns XLA off
        # (`jit_compile="auto"`), since not every XLA kernel is deterministic.
        import tensorflow as tf
        from tensorflow.python.framework import config as tf_config

        tf.config.experimental.enable_op_determinism() if on else tf_config.disable_op_determinism()
        return str(bool(tf_config.is_op_determinism_enabled())).lower()
    if name == "torch":
        import torch

        if on:  # cuBLAS reads it when it starts: set before the first GPU matmul, else ignored
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(on)
        return str(on).lower()
    if name == "jax":
        # XLA reads its flags once, when JAX starts its backend: too late to set here.
        flag = "--xla_gpu_deterministic_ops=true" in os.environ.get("XLA_FLAGS", "")
        if on and not flag:
            return "not available: start pneumo with XLA_FLAGS=--xla_gpu_deterministic_ops=true"
        return str(flag).lower()
    return "not available on " + name


def device() -> str:
    """What the job computed on, as it decides the numbers: 'gpu: NVIDIA H100 80GB HBM3 (x1)', 'cpu: ... (2 cores)'."""
    import keras

    name, gpus = keras.backend.backend(), []
    try:
        if name == "tensorflow":
            import tensorflow as tf

            gpus = [tf.config.experimental.get_device_details(d).get("device_name", "GPU")
                    for d in tf.config.list_physical_devices("GPU")]
        elif name == "jax":
            import jax

            gpus = [d.device_kind for d in jax.devices() if d.platform != "cpu"]
        elif name == "torch":
            import torch

            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 -- a driver that cannot answer: call it a CPU job, as it runs
        gpus = []
    if gpus:
        return f"gpu: {gpus[0]} (x{len(gpus)})"
    cpu, vector = "unknown cpu", ""
    try:
        info = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in
                                                    Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines())}
        cpu, flags = info["model name"], set(info.get("flags", "").split())
        # oneDNN picks its kernels (and so the float rounding) by the widest vector unit:
        # a virtual CPU named only "AMD EPYC" says too little on its own.
        vector = next((f", {v}" for v in ("avx512f", "avx2", "avx") if v in flags), "")
    except (OSError, KeyError):
        cpu = platform.processor() or platform.machine() or cpu
    return f"cpu: {cpu} ({os.cpu_count()} cores{vector})"
