"""Input pipeline throughput: images/s from JPEG files to model-ready batches.

    python benchmarks/input_pipeline.py [--root ../shared/data/kermany-224] [--size 128] [--batch 32]

(a) pneumo.data.load with an empty cache dir (index + hash + decode + split),
(b) the same again, warm from its decode cache, (c) keras.utils.image_dataset_from_directory,
(d) the seed's ImageDataGenerator.flow_from_directory. Each iterates every image once
in float32 batches of --batch; the Keras (and backend) import is not counted against (c) or (d).
Every file is read once before timing, so all four start from the same page cache.
Any Keras backend: (c) needs tf.data, so without TensorFlow installed it is skipped;
(d) is Keras' own legacy copy there.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "kermany-224"


def pneumo_loader(root: Path, size: int, batch: int, cache_dir: str, workers: int) -> int:
    from omegaconf import OmegaConf

    from pneumo.config import defaults
    from pneumo.data import load

    cfg = OmegaConf.merge(defaults.option("data", "folder"), dict(root=str(root), cache_dir=cache_dir, workers=workers))
    splits = load(cfg, size, progress=False)
    n = 0
    for sub in (splits.train, splits.val, splits.test):
        for i in range(0, len(sub), batch):
            xb = sub.x[i : i + batch].astype(np.float32)  # what model.fit receives per step
            n += len(xb)
    return n


def keras_directory(root: Path, size: int, batch: int) -> int:
    import keras

    ds = keras.utils.image_dataset_from_directory(
        root / "train", label_mode="binary", color_mode="grayscale", image_size=(size, size),
        batch_size=batch, shuffle=False, verbose=False)
    return sum(int(x.shape[0]) for x, _ in ds)


def image_data_generator(root: Path, size: int, batch: int) -> int:
    try:
        from tensorflow.keras.preprocessing.image import ImageDataGenerator
    except ImportError:
        from keras.src.legacy.preprocessing.image import ImageDataGenerator
    gen = ImageDataGenerator(rescale=1 / 255).flow_from_directory(
        root / "train", target_size=(size, size), color_mode="grayscale", batch_size=batch,
        class_mode="binary", shuffle=False)
    return sum(len(gen[i][0]) for i in range(len(gen)))


def timed(fn, *args) -> tuple:
    t = time.perf_counter()
    n = fn(*args)
    return n, time.perf_counter() - t


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=0, help="pneumo decode processes; 0 = one per core")
    args = p.parse_args()
    if not (args.root / "train").is_dir():
        sys.exit(f"{args.root} has no train/: pass --root <Kaggle-layout folder>")
    # Read every file once first: all four pipelines then start from the same warm page cache.
    n_bytes = sum(len(f.read_bytes()) for f in args.root.rglob("*") if f.is_file())
    print(f"{args.root}: {n_bytes / 1e6:.0f} MB read into the page cache before timing")
    rows = []
    with tempfile.TemporaryDirectory(prefix="pneumo-bench-") as cache:
        rows.append(("(a) pneumo load, cold cache", *timed(pneumo_loader, args.root, args.size, args.batch, cache, args.workers)))
        rows.append(("(b) pneumo load, warm cache", *timed(pneumo_loader, args.root, args.size, args.batch, cache, args.workers)))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    t = time.perf_counter()
    import keras  # (import time reported, not counted; pneumo, imported above, chose the backend)

    have_tf = importlib.util.find_spec("tensorflow") is not None
    if have_tf:
        import tensorflow  # noqa: F401

    keras_import = time.perf_counter() - t
    if have_tf:
        rows.append(("(c) keras image_dataset_from_directory",
                     *timed(keras_directory, args.root, args.size, args.batch)))
    else:
        print("(c) skipped: keras.utils.image_dataset_from_directory needs TensorFlow (tf.data), not installed")
    try:
        rows.append(("(d) ImageDataGenerator.flow_from_directory",
                     *timed(image_data_generator, args.root, args.size, args.batch)))
    except ImportError as e:
        print(f"(d) skipped: ImageDataGenerator not available ({e})")
    warm = rows[1][1] / rows[1][2]
    print(f"\n{args.root}  size {args.size}px  batch {args.batch}  cores {os.cpu_count()}  "
          f"{platform.processor() or platform.machine()}  Python {platform.python_version()}  "
          f"Keras {keras.__version__} on {keras.backend.backend()}")
    print("| pipeline | images | seconds | images/s | warm cache is x faster |\n|---|---:|---:|---:|---:|")
    for name, n, s in rows:
        print(f"| {name} | {n} | {s:.2f} | {n / s:,.0f} | {warm / (n / s):.1f} |")
    print(f"\nKeras + {keras.backend.backend()} import (not counted above): {keras_import:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
