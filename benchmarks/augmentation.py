"""What augmentation costs per epoch: none vs Keras' RandomRotation/Zoom/Translation/Contrast layers vs pneumo's Augment.

    KERAS_BACKEND=jax python benchmarks/augmentation.py [--data kermany|synthetic] [--model resnet] [--size 128]
        [--images 321] [--epochs 3] [--repeats 2] [--batch 64]
    KERAS_BACKEND=jax python benchmarks/augmentation.py --per-batch     # the layers alone, compiled

--per-batch times the augmentation alone on one batch (random pixels), compiled as a
train step compiles it (jax.jit; tf.function with XLA where the layers allow it;
torch eager), 20 calls after a warm-up.

Each case is pneumo's own model (pneumo.model.builders.build) with the `light` augmentation
of conf/augmentation/light.yaml, trained with plain model.fit on the same images
(validation included); epochs after the first (compilation) are timed, in wall and in
CPU seconds of this process (all its threads): on a shared machine CPU time moves much
less than wall time. Cases run round-robin `--repeats` times (ABAB...), so a slow spell
hits every case alike; the ratios to `none` (medians) are the figures to read. Runs on
any backend.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
KERMANY = ROOT.parent / "shared" / "data" / "kermany-224"


def keras_layers(rotation=0.0, zoom=0.0, translation=0.0, contrast=0.0, seed=None, **_):
    """The augmentation pneumo used before pneumo.model.layers: one Keras preprocessing layer per transform."""
    import keras

    layers = []
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, fill_mode="constant", seed=seed))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, fill_mode="constant", seed=seed))
    if translation:
        layers.append(keras.layers.RandomTranslation(translation, translation, fill_mode="constant", seed=seed))
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, seed=seed))
    return keras.Sequential(layers, name="augmentation")


def light() -> dict:
    from pneumo.config import defaults

    return defaults.values("augmentation", "light")


def images(args):
    import numpy as np
    from omegaconf import OmegaConf

    from pneumo import data
    from pneumo.config import defaults

    if args.data == "kermany":
        source, cfg = "folder", dict(root=str(KERMANY))
    else:
        source, cfg = "synthetic", dict(n_images=max(args.images * 2, 200), image_px=args.size)
    cfg = OmegaConf.merge(defaults.option("data", source), dict(cache_dir=str(ROOT / ".cache" / "data"), **cfg))
    splits = data.load(cfg, args.size, progress=False)
    pick = np.random.default_rng(0).permutation(len(splits.train))[: args.images]
    return splits.train.x[pick], splits.train.y[pick], splits.val.x[:128], splits.val.y[:128]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=("kermany", "synthetic"), default="kermany" if KERMANY.is_dir() else "synthetic")
    p.add_argument("--model", default="resnet", choices=("cnn", "resnet", "transfer"))
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--images", type=int, default=321)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--jit", default="auto", choices=("auto", "true", "false"),
                   help="trainer.jit_compile: auto (pneumo's: XLA where there is a GPU), or force XLA on/off")
    p.add_argument("--per-batch", action="store_true", help="time the augmentation layers alone")
    args = p.parse_args()
    if args.per_batch:
        return per_batch(args)

    import keras

    from pneumo.config import defaults
    from pneumo.model import builders

    x, y, xv, yv = images(args)
    aug = light()
    cases = {
        "none": defaults.values("augmentation", "none"),
        "keras layers (before)": aug,
        "pneumo Augment": aug,
    }
    times: dict[str, list[float]] = {c: [] for c in cases}
    original = builders.augmentation

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            if epoch > 0:  # the first epoch compiles
                self.laps.append((time.perf_counter() - self.t[0], time.process_time() - self.t[1]))

    print(f"{keras.backend.backend()} backend, Keras {keras.__version__}, {os.cpu_count()} cores "
          f"({platform.processor() or platform.machine()}), {_devices()}; {args.model} at {args.size} px, "
          f"{len(x)} {args.data} images, batch {args.batch}, jit_compile={args.jit}; light = {aug}", flush=True)
    for repeat in range(args.repeats):
        for case, kw in cases.items():
            builders.augmentation = keras_layers if case.startswith("keras") else original
            keras.backend.clear_session()
            jit = {"auto": "auto", "true": True, "false": False}[args.jit]
            model = builders.build(args.size, getattr(builders, args.model), defaults.values("model", args.model), kw,
                                   keras.optimizers.Adam(1e-3), seed=0, jit_compile=jit, standardize=False,
                                   run_eagerly=False)
            clock = Clock()
            clock.laps = []
            model.fit(x, y, validation_data=(xv, yv), epochs=args.epochs, batch_size=args.batch, verbose=0,
                      callbacks=[clock])
            times[case] += clock.laps
            print(f"  repeat {repeat + 1} {case:22s} s/epoch wall {[round(w, 2) for w, _ in clock.laps]} "
                  f"cpu {[round(c, 2) for _, c in clock.laps]}", flush=True)
    builders.augmentation = original

    def median(case, i):
        return statistics.median(lap[i] for lap in times[case])

    print("\n| augmentation | wall s/epoch | images/s | CPU s/epoch | vs none, wall | vs none, CPU |\n"
          "|---|---:|---:|---:|---:|---:|")
    for case in times:
        wall, cpu = median(case, 0), median(case, 1)
        print(f"| {case} | {wall:.2f} | {len(x) / wall:,.0f} | {cpu:.2f} | {wall / median('none', 0):.2f}x | "
              f"{cpu / median('none', 1):.2f}x |")
    return 0


def per_batch(args) -> int:
    import keras
    import numpy as np

    from pneumo.model.layers import Augment

    x = np.random.default_rng(0).random((args.batch, args.size, args.size, 1)).astype("float32")
    aug = light()
    print(f"{keras.backend.backend()} backend, Keras {keras.__version__}, {_devices()}; one batch of {args.batch} "
          f"at {args.size} px; light = {aug}")
    print("| augmentation | ms per batch |\n|---|---:|")
    for name, layer in (("keras layers (before)", keras_layers(**aug, seed=0)), ("pneumo Augment", Augment(**aug, seed=0))):
        inputs = keras.Input((args.size, args.size, 1))
        model = keras.Model(inputs, layer(inputs, training=True))
        call = _compiled(model, xla=name.startswith("pneumo"))
        call(x)
        start = time.perf_counter()
        for _ in range(20):
            out = call(x)
        np.asarray(keras.ops.convert_to_numpy(out))
        print(f"| {name} | {(time.perf_counter() - start) / 20 * 1000:.1f} |")
    return 0


def _compiled(model, xla: bool):
    import keras

    if keras.backend.backend() == "jax":
        import jax

        state = [v.value for v in model.non_trainable_variables]
        step = jax.jit(lambda s, x: model.stateless_call([], s, x, training=True))

        def call(x):
            out, new = step(state, x)
            state[:] = new  # the seed generator advances, as in training
            return out

        return call
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # Keras' image layers use ops XLA cannot compile (ImageProjectiveTransformV3): graph mode for them
        return tf.function(lambda x: model(x, training=True), jit_compile=xla)
    return lambda x: model(x, training=True)


def _devices() -> str:
    from pneumo.runtime.backend import accelerators

    return f"accelerators {accelerators() or 'none'}"


if __name__ == "__main__":
    sys.exit(main())
