"""Training throughput (images/s) per model, image size, augmentation and precision, on any backend.

    python benchmarks/throughput.py [--models cnn resnet transfer] [--sizes 128 224] [--aug none light]
        [--precision float32 mixed_float16] [--images 1024] [--epochs 3] [--batch 64]

Each case is pneumo's own model (pneumo.model.builders.build, the conf/ defaults of the model and
of conf/augmentation/light.yaml, jit_compile as pneumo resolves "auto") trained with plain
model.fit on real films (../shared/data, else synthetic), validation included; the epochs
after the first (compilation) are timed. Prints one markdown row per case: the table in
benchmarks/README.md. On a GPU, mixed_float16 is float16 compute (bfloat16 is a
`--precision mixed_bfloat16` away); on a CPU, mixed precision is emulated and slow, so the
CPU rows use float32 only.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["cnn", "resnet", "transfer"])
    p.add_argument("--sizes", nargs="+", type=int, default=[128, 224])
    p.add_argument("--aug", nargs="+", default=["none", "light"], choices=("none", "light"))
    p.add_argument("--precision", nargs="+", default=["float32"])
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()

    import keras

    from pneumo.config import defaults
    from pneumo.model import builders
    from pneumo.runtime.backend import accelerators

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from augmentation import images, light  # the same films and `light` as the augmentation benchmark

    print(f"{keras.backend.backend()} backend, Keras {keras.__version__}, accelerators {accelerators() or 'none'}; "
          f"{args.images} films, batch {args.batch}, epochs 2-{args.epochs} timed", flush=True)
    print("| model | px | augmentation | precision | s/epoch | images/s |\n|---|---:|---|---|---:|---:|")
    for size in args.sizes:
        ns = argparse.Namespace(data="kermany" if (ROOT.parent / "shared" / "data" / "kermany-224").is_dir()
                                else "synthetic", images=args.images, size=size)
        x, y, xv, yv = images(ns)
        for model, aug, precision in itertools.product(args.models, args.aug, args.precision):
            keras.backend.clear_session()
            keras.mixed_precision.set_global_policy(precision)
            net = builders.build(size, getattr(builders, model), defaults.values("model", model),
                                 light() if aug == "light" else defaults.values("augmentation", "none"),
                                 keras.optimizers.Adam(1e-3), seed=0, jit_compile="auto", standardize=False,
                                 run_eagerly=False)
            laps = []

            class Clock(keras.callbacks.Callback):
                def on_epoch_begin(self, epoch, logs=None):
                    self.t = time.perf_counter()

                def on_epoch_end(self, epoch, logs=None):
                    if epoch > 0:
                        laps.append(time.perf_counter() - self.t)  # noqa: B023 -- used in this iteration only

            net.fit(x, y, validation_data=(xv, yv), epochs=args.epochs, batch_size=args.batch, verbose=0,
                    callbacks=[Clock()])
            lap = statistics.median(laps)
            print(f"| {model} | {size} | {aug} | {precision} | {lap:.2f} | {len(x) / lap:,.0f} |", flush=True)
    keras.mixed_precision.set_global_policy("float32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
