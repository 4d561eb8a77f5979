"""Training images/s of a bare model.fit: pneumo's model without and with its Augment layer, on real films.

    python benchmarks/gpu/bench.py --root DATA [--models resnet] [--size 128] [--aug none light]
        [--images 0] [--epochs 5] [--batch 64] [--cache-dir DIR]

Each case is pneumo's own model (pneumo.model.builders.build, every search space at its conf/
default, `light` from conf/augmentation/light.yaml, jit_compile as pneumo resolves "auto") trained
by a plain model.fit on the training split of DATA (pneumo.data.load, Kaggle layout), no validation,
no callbacks but a clock: the rows of benchmarks/README.md's GPU section. Epoch 1 compiles and is
not counted; the median of the others is. benchmarks/throughput.py does the same for the CPU
tables from ../shared/data; this one reads the GPU kit's copy (--root), which is what travels.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:  # heavy imports inside: pneumo's decode workers are spawned and re-import this file
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="a folder in the Kaggle layout (train/NORMAL, train/PNEUMONIA)")
    p.add_argument("--models", nargs="+", default=["resnet"], choices=("cnn", "resnet", "transfer"))
    p.add_argument("--size", type=int, default=128, help="px the models train at")
    p.add_argument("--aug", nargs="+", default=["none", "light"], help="conf/augmentation options")
    p.add_argument("--images", type=int, default=0, help="training films per epoch (0: the whole training split)")
    p.add_argument("--epochs", type=int, default=5, help="the first is compilation and is not timed")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--cache-dir", default=str(ROOT / ".cache" / "data"), help="pneumo's decode cache")
    args = p.parse_args()
    if args.epochs < 2:
        p.error("--epochs: at least 2 (the first compiles)")
    sys.path.insert(0, str(ROOT))

    import keras
    from omegaconf import OmegaConf

    from pneumo import data
    from pneumo.config import defaults
    from pneumo.model import builders
    from pneumo.runtime.backend import accelerators

    cfg = OmegaConf.merge(defaults.option("data", "folder"), dict(root=str(args.root), cache_dir=args.cache_dir))
    t = time.perf_counter()
    train = data.load(cfg, args.size, progress=False).train
    x, y = (train.x[: args.images], train.y[: args.images]) if args.images else (train.x, train.y)
    print(f"{keras.backend.backend()} backend, Keras {keras.__version__}, accelerators {accelerators() or 'none'}; "
          f"{args.root}: {len(x)} training films at {args.size} px (loaded in {time.perf_counter() - t:.1f} s), "
          f"batch {args.batch}, epochs 2-{args.epochs} timed", flush=True)
    print("| model | px | augmentation | first epoch, s | s/epoch | images/s |\n|---|---:|---|---:|---:|---:|", flush=True)
    for model in args.models:
        for aug in args.aug:
            keras.backend.clear_session()
            net = builders.build(args.size, getattr(builders, model), defaults.values("model", model),
                                 defaults.values("augmentation", aug), keras.optimizers.Adam(1e-3), seed=0,
                                 jit_compile=defaults.option("trainer", "default").jit_compile,
                                 standardize=False, run_eagerly=False)
            laps = []

            class Clock(keras.callbacks.Callback):
                def on_epoch_begin(self, epoch, logs=None):
                    self.t = time.perf_counter()

                def on_epoch_end(self, epoch, logs=None):
                    laps.append(time.perf_counter() - self.t)  # noqa: B023 -- read in this iteration only

            net.fit(x, y, epochs=args.epochs, batch_size=args.batch, verbose=0, callbacks=[Clock()])
            lap = statistics.median(laps[1:])
            print(f"| {model} | {args.size} | {aug} | {laps[0]:.2f} | {lap:.3f} | {len(x) / lap:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
