"""What trainer.deterministic costs: the same fit with the backend's deterministic kernels off and on.

    [KERAS_BACKEND=jax] python benchmarks/determinism.py [--size 128] [--n-images 600] [--epochs 4]
        [--batch 32] [--repeats 3] [--models cnn resnet]

Each fit runs in its own process (the switch is process-wide, and so are compiled-graph
caches), in ABBA order over the repeats: pneumo's own model (every search space at its
default, `jit_compile="auto"` as a job has it), the synthetic set, class weights, seed 42,
`pneumo.runtime.backend.determinism(on)` called before anything is built, as a job calls it.
Each epoch is timed from its start to the next one's, in wall and in CPU seconds (all the
process's threads); epoch 1 (graph tracing, XLA compilation) is left out of the medians.
Also printed: whether the repeats of each setting ended with bit-identical weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def fit(args) -> dict:
    """One fit in this process; its epoch times and a digest of its final weights."""
    import pneumo  # noqa: F401  (first: picks the installed backend when KERAS_BACKEND is unset)
    from pneumo.runtime import backend

    state = backend.determinism(args.child == "on")  # before Keras builds anything, as train() does
    import keras
    import keras_tuner
    from hydra import compose, initialize_config_dir

    from pneumo import data
    from pneumo.config import paths, schema
    from pneumo.model.builders import HyperModel
    from pneumo.search.fit import class_weight

    schema.register()
    with initialize_config_dir(config_dir=str(paths.CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={args.models[0]}", "data=synthetic",
                                           f"data.n_images={args.n_images}", "data.image_px=128",
                                           f"paths.cache={args.cache}"])
    splits = data.load(cfg.data, args.size)
    keras.utils.set_random_seed(42)
    model = HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, args.size, seed=42).build(
        keras_tuner.HyperParameters())
    marks = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            marks.append((time.perf_counter(), time.process_time()))

        def on_train_end(self, logs=None):
            marks.append((time.perf_counter(), time.process_time()))

    model.fit(splits.train.x, splits.train.y, validation_data=(splits.val.x, splits.val.y), epochs=args.epochs,
              batch_size=args.batch, class_weight=class_weight(splits.train.y), callbacks=[Clock()], verbose=0)
    weights = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
    epochs = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks, marks[1:])]
    return {"state": state, "epochs": epochs, "weights": weights, "train_images": len(splits.train),
            "backend": keras.backend.backend(), "jit": bool(model.jit_compile)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--n-images", type=int, default=600)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", nargs="+", default=["cnn"])
    p.add_argument("--cache", default=str(REPO / ".cache"))
    p.add_argument("--child", choices=("on", "off"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print("RESULT " + json.dumps(fit(args)))
        return
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    for model in args.models:
        runs: dict[str, list[dict]] = {"off": [], "on": []}
        order = [("off", "on") if r % 2 == 0 else ("on", "off") for r in range(args.repeats)]
        for mode in (m for pair in order for m in pair):
            cmd = [sys.executable, __file__, "--child", mode, "--models", model, "--size", str(args.size),
                   "--n-images", str(args.n_images), "--epochs", str(args.epochs), "--batch", str(args.batch),
                   "--cache", args.cache]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            runs[mode].append(json.loads(out.split("RESULT ", 1)[1]))
        first = runs["off"][0]
        print(f"\n{model}, {first['backend']}, {args.size} px, {first['train_images']} train images, batch "
              f"{args.batch}, {args.epochs} epochs x {args.repeats} repeats (epoch 1 left out)")
        print("| deterministic | tag | XLA | epoch wall s (median) | epoch CPU s (median) | weights identical across "
              "repeats |\n|---|---|---|---:|---:|---|")
        med = {}
        for mode, rs in runs.items():
            later = [e for r in rs for e in r["epochs"][1:]]
            med[mode] = (statistics.median(w for w, _ in later), statistics.median(c for _, c in later))
            same = len({r["weights"] for r in rs}) == 1
            print(f"| {mode} | {rs[0]['state']} | {rs[0]['jit']} | {med[mode][0]:.2f} | {med[mode][1]:.2f} | "
                  f"{'yes' if same else 'no'} |")
        print(f"on/off: wall {med['on'][0] / med['off'][0]:.2f}x, CPU {med['on'][1] / med['off'][1]:.2f}x; "
              f"on and off give the same weights: {runs['on'][0]['weights'] == runs['off'][0]['weights']}")


if __name__ == "__main__":
    main()
