"""Decode one image file (or its bytes) to the model's input: gray uint8, square.

The single definition of preprocessing outside the model: the decode cache
uses it for training data and the logged MLflow model uses it for served
images, so what a model sees in production is what it saw in training.
Only PIL and NumPy here (no Keras): the data commands stay fast to start.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# A real chest film is at most a few thousand pixels a side; anything beyond this
# is a decompression bomb or not an X-ray. PIL raises past 2x this, warns past 1x.
MAX_PIXELS = 50_000_000
MAX_ASPECT = 8.0  # X-rays are near square; a 20,000 x 1 "image" is not one


class ImageError(ValueError):
    """An image that cannot be used; str(error) is the reason, for reports."""


def decode(source: str | Path | bytes, size: int) -> np.ndarray:
    """Return a (size, size) uint8 gray array, or raise ImageError saying why."""
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("empty (0 bytes)")
        fp = io.BytesIO(source)
    else:
        path = Path(source)
        try:
            if path.stat().st_size == 0:
                raise ImageError("empty file (0 bytes)")
            fp = io.BytesIO(path.read_bytes())
        except OSError as e:
            raise ImageError(f"unreadable: {e.strerror or e}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            img = Image.open(fp)
            w, h = img.size
            if min(w, h) < 8:
                raise ImageError(f"too small to be an X-ray ({w}x{h} px)")
            if max(w, h) / min(w, h) > MAX_ASPECT:
                raise ImageError(f"implausible aspect ratio ({w}x{h} px)")
            # JPEG can decode straight to a reduced scale: much faster for big films.
            img.draft("L", (size, size))
            img.load()
            gray = _to_gray(img)
            return np.asarray(gray.resize((size, size), Image.BILINEAR), dtype=np.uint8)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"refused as a decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated / corrupt streams
        raise ImageError(f"corrupt image: {e}") from None


def _to_gray(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit films: scale to 8 bits instead of clipping everything above 255.
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") else max(float(a.max()), 1.0)
        return Image.fromarray(np.clip(a * 255.0 / hi, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))  # film background is black
        return Image.alpha_composite(background, rgba).convert("L")
    return img.convert("L")
