"""Cheap checks on an image file as it arrives, before it is reduced to the model's gray square.

A handful of numbers per file that tell a chest film from other pictures, measured on a 64 px
reduction of the raw image (colour kept): colour saturation, exposure (mean), contrast (std),
dark and burnt-out shares (blank or saturated frames), histogram entropy, and
the film's layout. On a frontal chest film the mediastinum and spine (a bright vertical band in
the middle) are brighter than the lungs on either side: `mediastinum` is that difference, and it
turns negative on an inverted film; `rotated` is the same difference across a horizontal band,
which a film turned by 90 degrees makes larger than `mediastinum`. Then the film's layout: the
reduction averaged down to LAYOUT x LAYOUT blocks and standardised (exposure and contrast taken out),
which the guard's orientation check (pneumo.evaluation.orientation) reads to tell an upright film
from one upside down or mirrored. Only PIL and NumPy.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from pneumo.data.imaging import MAX_PIXELS, ImageError, _to_gray

# Not the aspect ratio: the model sees every file squashed to a square, and a training collection
# resized to squares (as kermany-224 is) would make every real, oblong film look foreign.
FEATURES = ("saturation", "mean", "std", "dark", "bright", "entropy", "mediastinum", "rotated", "top_bottom")
SIDE = 64  # px of the reduction the numbers are measured on
# px a side of the layout: at 8 the apices, diaphragm and heart are a few blocks each, and an upside-down
# training film was told from an upright one as well as at 16 or 32 (docs/trust.md); 64 weights to fit
LAYOUT = 8
_COLOUR_MODES = ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV")


def _reduced(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(gray SIDE x SIDE in [0, 1], saturation SIDE x SIDE in [0, 1]) of the raw file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            img = Image.open(io.BytesIO(data))
            img.draft(img.mode if img.mode in ("L", "RGB") else None, (SIDE * 2, SIDE * 2))
            img.load()
            gray = np.asarray(_to_gray(img).resize((SIDE, SIDE), Image.BILINEAR), dtype=np.float64) / 255
            if img.mode in _COLOUR_MODES:
                rgb = np.asarray(img.convert("RGB").resize((SIDE, SIDE), Image.BILINEAR), dtype=np.float64) / 255
                sat = rgb.max(axis=2) - rgb.min(axis=2)
            else:
                sat = np.zeros_like(gray)
    except Exception as e:  # noqa: BLE001 -- decode() reports the same file's error in its row
        raise ImageError(f"cannot measure: {e}") from None
    return gray, sat


def _band(gray: np.ndarray, axis: int) -> float:
    """Middle band minus the two side regions, across `axis` (1: a vertical band, left/right sides)."""
    g = gray if axis == 1 else gray.T
    rows = slice(SIDE // 4, 3 * SIDE // 4)  # the lung height: clear of neck and abdomen
    middle = g[rows, 7 * SIDE // 16: 9 * SIDE // 16].mean()
    sides = np.concatenate([g[rows, SIDE // 8: 3 * SIDE // 8].ravel(), g[rows, 5 * SIDE // 8: 7 * SIDE // 8].ravel()])
    return float(middle - sides.mean())


def layout(gray: np.ndarray) -> np.ndarray:
    """The LAYOUT x LAYOUT block means of a SIDE x SIDE gray film, standardised, flattened row by row."""
    k = gray.shape[0] // LAYOUT
    blocks = gray.reshape(LAYOUT, k, LAYOUT, k).mean(axis=(1, 3))
    return ((blocks - blocks.mean()) / max(float(blocks.std()), 1e-3)).ravel()  # 1e-3: a blank frame stays finite


def split(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the FEATURES columns, the layout columns) of stacked `features` rows."""
    rows = np.asarray(rows, float)
    return rows[:, :len(FEATURES)], rows[:, len(FEATURES):]


def features(data: bytes) -> np.ndarray:
    """One encoded image file's FEATURES, then its layout (LAYOUT**2 numbers), as float64; raises
    ImageError if it cannot be read."""
    gray, sat = _reduced(data)
    hist = np.bincount(np.minimum((gray * 32).astype(int), 31).ravel(), minlength=32) / gray.size
    entropy = -float(np.sum(hist[hist > 0] * np.log2(hist[hist > 0]))) / 5  # 5 bits: all 32 bins equally full
    top, bottom = gray[: SIDE // 3].mean(), gray[-SIDE // 3:].mean()
    return np.array([sat.mean(), gray.mean(), gray.std(), (gray < 10 / 255).mean(), (gray > 245 / 255).mean(),
                     entropy, _band(gray, 1), _band(gray, 0), bottom - top, *layout(gray)])


def many(blobs) -> tuple[np.ndarray, list[int]]:
    """(features of every readable file, stacked; the indices of those files)."""
    rows, ok = [], []
    for i, b in enumerate(blobs):
        try:
            rows.append(features(b))
            ok.append(i)
        except ImageError:
            pass
    return (np.stack(rows) if rows else np.zeros((0, len(FEATURES) + LAYOUT**2))), ok


def from_array(x: np.ndarray) -> bytes:
    """A decoded gray film back to PNG bytes: the fallback when its raw file is gone."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(x).reshape(x.shape[0], x.shape[1]).astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()
