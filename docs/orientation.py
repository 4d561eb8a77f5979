"""docs/trust.md's orientation numbers: the out-of-distribution guard on Kermany films turned around.

    PYTHONPATH=. .venv/bin/python docs/orientation.py [--root ../shared/data/kermany-224]
        [--external ../shared/data/kermany-224-external] [--cache /tmp/orientation-cache] [--no-guard]

pneumo's own split of the training collection (data=folder, seed 0, patients disjoint). The
orientation check is fitted on (up to 2,000) training films, its lines on the validation films, and
read on the test split's films (carved from train: never fitted, never used for a line) and on the
external set, each as its file and turned around (flipped top-to-bottom, rotated by 180 degrees,
mirrored left-to-right), re-encoded as JPEG as a turned file would arrive. Then the whole guard
(distances and orientation, fitted by ood_fit.fit_guard as a job fits it) of a small CNN trained
here for 3 epochs at 32 px on 400 training films: the guard needs an embedding; the model is no
classifier to report. Beside it, the same guard without its orientation check (a format-1 guard):
what the guard did before. The non-film rows are made from external films (inverted, turned by 90
degrees, tiles shuffled), the photographs of scikit-learn's sample data, Matplotlib's MRI slice, a
CT-like disc and blank frames.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pneumo.evaluation import imagestats, orientation  # noqa: E402 -- the checkout's pneumo, put on the path above

TURNS = {"upside down (flipped top-to-bottom)": Image.Transpose.FLIP_TOP_BOTTOM,
         "upside down (rotated 180 degrees)": Image.Transpose.ROTATE_180,
         "mirrored (flipped left-to-right)": Image.Transpose.FLIP_LEFT_RIGHT}
SIZE = 32  # px: the split does not depend on it, and the small model is trained at it
TRAIN_SAMPLE, MODEL_FILMS, SEED = 2000, 400, 0


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def turned(blob: bytes, how) -> bytes:
    with Image.open(io.BytesIO(blob)) as img:
        return jpeg(img.transpose(how))


def splits(root: str, cache: str):
    from omegaconf import OmegaConf

    from pneumo import data

    cfg = OmegaConf.load(ROOT / "conf" / "data" / "folder.yaml")
    cfg.pop("defaults", None)
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"root={root}", f"cache_dir={cache}", "workers=1"]))
    return data.load(cfg, SIZE, progress=False)


def files(s, subset, idx=None) -> list[bytes]:
    paths = subset.paths if idx is None else subset.paths[idx]
    return [(Path(s.root) / p).read_bytes() for p in paths]


def external_files(folder) -> list[bytes]:
    return [p.read_bytes() for p in sorted(Path(folder).rglob("*.jpeg"))]


def check_rates(s, external: list[bytes], train_sample: int = TRAIN_SAMPLE, quantile: float = 0.99) -> dict:
    """{row: (films, share flagged by the orientation check)} for upright and turned films."""
    rng = np.random.default_rng(SEED)
    idx = np.sort(rng.choice(len(s.train), min(train_sample, len(s.train)), replace=False))
    layout = lambda blobs: imagestats.split(imagestats.many(blobs)[0])[1]  # noqa: E731
    w, b = orientation.fit(layout(files(s, s.train, idx)), layout(files(s, s.val)), quantile)
    flagged = lambda blobs: (orientation.ratios(layout(blobs), w, b) > 1).any(axis=1)  # noqa: E731
    test = files(s, s.test)
    out = {"validation films (upright)": flagged(files(s, s.val)), "test films (upright)": flagged(test),
           "external films (upright)": flagged(external)}
    for name, how in TURNS.items():
        out[f"test films {name}"] = flagged([turned(f, how) for f in test])
        out[f"external films {name}"] = flagged([turned(f, how) for f in external])
    return {k: (len(v), float(v.mean())) for k, v in out.items()}


def not_films(external: list[bytes]) -> dict[str, list[bytes]]:
    """The kinds of the issue's table that are not usable films, made from what is on this machine."""
    import gzip

    import matplotlib.cbook
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(SEED)
    films = [np.asarray(Image.open(io.BytesIO(f)).convert("L")) for f in external[::28][:10]]
    gray = lambda a: jpeg(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L"))  # noqa: E731

    def shuffled(a):
        t = a.shape[0] // 4
        tiles = [a[i:i + t, j:j + t] for i in range(0, 4 * t, t) for j in range(0, 4 * t, t)]
        order = rng.permutation(16)
        return np.vstack([np.hstack([tiles[order[4 * r + c]] for c in range(4)]) for r in range(4)])

    photos = [Image.fromarray(p) for p in load_sample_images().images]
    with gzip.open(matplotlib.cbook.get_sample_data("s1045.ima.gz", asfileobj=False)) as f:
        mri = np.frombuffer(f.read(), ">u2").reshape(256, 256).astype(float)
    r = np.hypot(*(np.mgrid[0:256, 0:256] - 128))
    return {"inverted films": [gray(255 - a) for a in films], "films turned by 90 degrees": [gray(np.rot90(a)) for a in films],
            "films with their tiles shuffled": [gray(shuffled(a)) for a in films],
            "photographs (colour and gray)": [jpeg(p) for p in photos] + [jpeg(p.convert("L")) for p in photos],
            "MRI slice": [gray(255 * mri / mri.max())],
            "CT-like disc": [gray(np.where(r < 110, 90 + 50 * (r < 40) + rng.normal(0, 8, r.shape), 0))],
            "blank, white and mid-gray frames": [gray(np.full((128, 128), v)) for v in (0, 255, 128)]}


def guard_rates(s, external: list[bytes]) -> dict:
    """{row: (films, share flagged by the whole guard, share flagged without its orientation check)}."""
    import keras
    from omegaconf import OmegaConf

    from pneumo.data.imaging import decode
    from pneumo.evaluation import ood_fit
    from pneumo.model import embedding

    keras.utils.set_random_seed(SEED)
    pick = np.random.default_rng(SEED).choice(len(s.train), MODEL_FILMS, replace=False)
    inputs = keras.Input((SIZE, SIZE, 1), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    for f in (8, 16):
        x = keras.layers.MaxPooling2D()(keras.layers.Conv2D(f, 3, padding="same", activation="relu")(x))
    x = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="pneumonia")(x))
    model.compile("adam", "binary_crossentropy")
    model.fit(s.train.x[pick], s.train.y[pick], epochs=3, batch_size=32, verbose=0)
    ev = OmegaConf.load(ROOT / "conf" / "evaluation" / "default.yaml")
    guard, _ = ood_fit.fit_guard(model, s, 0.5, ev, 64)
    embed = embedding.embedder(model)

    def flags(blobs):
        rows, ok = imagestats.many(blobs)
        emb = embedding.predict(embed, np.stack([decode(blobs[i], SIZE) for i in ok])[..., None])[1]
        score, flagged = guard.score(rows, emb)
        a, b = guard.distances(rows, emb)
        return flagged, np.maximum(a, b) / guard.threshold > 1

    sets = {"validation films (upright)": files(s, s.val), "test films (upright)": files(s, s.test),
            "external films (upright)": external}
    sets.update({f"external films {name}": [turned(f, how) for f in external] for name, how in TURNS.items()})
    sets.update(not_films(external))
    out = {}
    for name, blobs in sets.items():
        new, old = flags(blobs)
        out[name] = (len(blobs), float(new.mean()), float(old.mean()))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = ROOT.parent / "shared" / "data"  # beside the checkout on the dev machine
    p.add_argument("--root", default=str(shared / "kermany-224"))
    p.add_argument("--external", default=str(shared / "kermany-224-external"))
    p.add_argument("--cache", default="/tmp/orientation-cache")
    p.add_argument("--no-guard", action="store_true", help="the orientation check only (no model trained)")
    args = p.parse_args(argv)
    s, external = splits(args.root, args.cache), external_files(args.external)
    print(f"split: {len(s.train)} training, {len(s.val)} validation, {len(s.test)} test films; "
          f"{len(external)} external films\n")
    print("| films | n | flagged by the orientation check |\n|---|---:|---:|")
    for name, (n, share) in check_rates(s, external).items():
        print(f"| {name} | {n} | {share:.1%} |")
    if not args.no_guard:
        print("\n| films | n | flagged by the guard | before the orientation check |\n|---|---:|---:|---:|")
        for name, (n, new, old) in guard_rates(s, external).items():
            print(f"| {name} | {n} | {new:.1%} | {old:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
