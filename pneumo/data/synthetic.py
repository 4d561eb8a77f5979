"""Synthetic chest films in the Kaggle layout and Kermany naming: the built-in data set.

Each patient has an anatomy (body, lungs, heart, ribs) that its films repeat with
small changes in pose and exposure. PNEUMONIA films add patchy opacities in the
lung fields (bacteria: one or two large; virus: several small) of random place,
size and density. Some NORMAL films carry faint look-alike patches and a fifth of
PNEUMONIA films only faint ones, so the classes overlap: measured at 64 px, a
3-block CNN reached test AUC 0.84 from 750 training films and 0.92 from 1,500;
logistic regression on 16 px thumbnails ~0.75. Deterministic for (seed,
n_images, image_px, normal_fraction).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from pneumo.data.base import DataError

VERSION = 1  # bump when the images change: it is part of the cache key
MARKER = "SYNTHETIC.json"  # written last: its presence means the set is complete
TEST_FRACTION = 0.15  # of each class's films, whole patients, written to test/
FAINT_PNEUMONIA = 0.2  # share of PNEUMONIA films whose opacities are as faint as normal variation
_IMAGES_PER_PATIENT = (1, 1, 1, 1, 2, 2, 3, 4, 6)  # Kermany: most patients 1-2 films, a few many


def _blur_noise(rng, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: a coarse grid upsampled bilinearly."""
    coarse = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, "F").resize((size, size), Image.BILINEAR))


def _ellipse(x, y, cx, cy, rx, ry, edge):
    d = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return 1.0 / (1.0 + np.exp(np.minimum((d - 1.0) / edge, 50.0)))


def _anatomy(rng) -> dict:
    return dict(
        body=rng.uniform(0.72, 0.9), lx=rng.uniform(0.3, 0.4), ly=rng.uniform(-0.12, 0.0),
        rx=rng.uniform(0.2, 0.27), ry=rng.uniform(0.42, 0.55), heart=rng.uniform(0.17, 0.24),
        ribs=rng.uniform(7.0, 10.0), rib_phase=rng.uniform(0, 2 * np.pi), tissue=rng.uniform(0.45, 0.6),
    )


def render(rng, a: dict, size: int, disease: str | None) -> np.ndarray:
    """One (size, size) uint8 film of anatomy `a`; disease None, 'bacteria' or 'virus'."""
    lin = np.linspace(-1, 1, size, dtype=np.float32)
    scale = rng.uniform(0.92, 1.08)
    x = (lin[None, :] - rng.uniform(-0.06, 0.06)) / scale
    y = (lin[:, None] - rng.uniform(-0.06, 0.06)) / scale
    body = _ellipse(x, y, 0, 0.15, a["body"], 1.25, 0.04)
    lungs = np.maximum(_ellipse(x, y, -a["lx"], a["ly"], a["rx"], a["ry"], 0.07),
                       _ellipse(x, y, a["lx"], a["ly"], a["rx"] * 0.95, a["ry"] * 1.03, 0.07))
    heart = _ellipse(x, y, 0.12, 0.3, a["heart"] * 1.3, a["heart"], 0.1)
    spine = np.exp(-((x / 0.07) ** 2)) * body
    ribs = (0.5 + 0.5 * np.sin(np.pi * a["ribs"] * (y + 0.3 * x**2) + a["rib_phase"])) ** 4
    img = 0.04 + a["tissue"] * body + 0.18 * spine + 0.12 * heart
    img = img - 0.32 * lungs * (1 - 0.7 * heart) + 0.08 * ribs * body * (0.3 + 0.7 * lungs)
    img = img + 0.035 * _blur_noise(rng, size, 14) * lungs  # vascular markings
    # Opacities: (count, radius, intensity) ranges. NORMAL films get faint look-alikes and
    # a fifth of PNEUMONIA films only faint opacities: the classes overlap, AUC stays below 1.
    faint = disease is None or rng.random() < FAINT_PNEUMONIA
    kind = {None: ((0, 3), (0.04, 0.1)), "bacteria": ((1, 3), (0.12, 0.3)), "virus": ((2, 6), (0.07, 0.16))}[disease]
    for _ in range(rng.integers(*kind[0])):
        side = rng.choice((-1.0, 1.0))
        cx = side * a["lx"] + a["rx"] * rng.uniform(-0.6, 0.6)
        cy = a["ly"] + a["ry"] * rng.uniform(-0.6, 0.7)
        r = rng.uniform(*kind[1])
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        patchy = np.clip(0.6 + _blur_noise(rng, size, 20), 0, 1)
        img = img + rng.uniform(*((0.0, 0.08) if faint else (0.12, 0.35))) * blob * patchy * lungs
    img = rng.uniform(0.85, 1.15) * img + rng.uniform(-0.05, 0.05)  # exposure
    img = np.clip(img, 0, 1) ** rng.uniform(0.85, 1.2) + rng.normal(0, 0.025, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _plan(rng, n_images: int, normal_fraction: float) -> list:
    """[(split, class, file name, patient index, disease)] in Kermany naming."""
    n_normal = round(n_images * normal_fraction)
    plan, patient = [], 0
    counters = {"IM": 114, "NORMAL2-IM": 400, "bacteria": 0, "virus": 0}
    image_no = {"bacteria": 0, "virus": 0}  # Kermany's M: one running number per subtype
    for cls, n in (("NORMAL", n_normal), ("PNEUMONIA", n_images - n_normal)):
        left, n_test = n, 0
        while left > 0:
            k = min(left, int(rng.choice(_IMAGES_PER_PATIENT)))
            # Whole patients go to test while it holds less than its share: stratified, disjoint.
            split = "test" if n_test < TEST_FRACTION * (n - left) else "train"
            n_test += k * (split == "test")
            if cls == "NORMAL":
                prefix = "IM" if rng.random() < 0.5 else "NORMAL2-IM"
                counters[prefix] += 1
                names = [f"{prefix}-{counters[prefix]:04d}-{j + 1:04d}.jpeg" for j in range(k)]
                disease = None
            else:
                disease = "bacteria" if rng.random() < 0.65 else "virus"
                counters[disease] += 1  # independent counters: person3_bacteria != person3_virus
                names = []
                for _ in range(k):
                    image_no[disease] += 1
                    names.append(f"person{counters[disease]}_{disease}_{image_no[disease]}.jpeg")
            plan += [(split, cls, name, patient, disease) for name in names]
            patient += 1
            left -= k
    return plan


def _write(out: Path, n_images: int, image_px: int, normal_fraction: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    plan = _plan(rng, n_images, normal_fraction)
    anatomies = [_anatomy(rng) for _ in range(plan[-1][3] + 1)] if plan else []
    for cls in ("NORMAL", "PNEUMONIA"):
        for split in ("train", "test"):
            (out / split / cls).mkdir(parents=True, exist_ok=True)
    for i, (split, cls, name, patient, disease) in enumerate(plan):
        film = render(np.random.default_rng([seed, i]), anatomies[patient], image_px, disease)
        buf = io.BytesIO()
        Image.fromarray(film, "L").save(buf, "JPEG", quality=92)
        (out / split / cls / name).write_bytes(buf.getvalue())


def generate(out: str | Path, n_images: int = 600, image_px: int = 128, normal_fraction: float = 0.26,
             seed: int = 0) -> Path:
    """Write the set to `out` (Kaggle layout) unless a complete one is there; return `out`."""
    out = Path(out)
    params = dict(version=VERSION, n_images=n_images, image_px=image_px, normal_fraction=normal_fraction, seed=seed)
    if (out / MARKER).exists():
        if json.loads((out / MARKER).read_text()) != params:
            raise DataError(f"{out} holds a different synthetic set: choose another folder or delete it")
        return out
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} exists and is not a synthetic set: choose an empty or new folder")
    if n_images < 8 or not 0 < normal_fraction < 1 or image_px < 16:
        raise DataError("synthetic set needs n_images >= 8, image_px >= 16 and 0 < normal_fraction < 1")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside `out` and renamed into place: concurrent jobs never see half a set.
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        _write(tmp, n_images, image_px, normal_fraction, seed)
        (tmp / MARKER).write_text(json.dumps(params))
        if out.exists():
            out.rmdir()  # empty (checked above); a racing job may have filled it since
        os.rename(tmp, out)
    except OSError:
        if not (out / MARKER).exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def default_root(cache_dir: str | Path, n_images: int, image_px: int, normal_fraction: float, seed: int) -> Path:
    key = f"v{VERSION}-seed{seed}-n{n_images}-px{image_px}-normal{normal_fraction:g}"
    return Path(cache_dir) / "synthetic" / key
