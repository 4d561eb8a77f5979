"""Decode one image file (or its bytes) to the model's input: gray uint8, square.

The single definition of preprocessing outside the model: the decode cache
uses it for training data and the logged MLflow model uses it for served
images, so what a model sees in production is what it saw in training.
Only PIL and NumPy here (no Keras): the data commands stay fast to start.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# A real chest film is at most a few thousand pixels a side; anything beyond this
# is a decompression bomb or not an X-ray. PIL raises past 2x this, warns past 1x.
MAX_PIXELS = 50_000_000
MAX_ASPECT = 8.0  # X-rays are near square; a 20,000 x 1 "image" is not one
# The largest file read as an image, in MiB (2**20 bytes): a 4,300 px square 16-bit PNG, the largest
# film a detector writes, is at most 37 MB uncompressed and 10-25 MB as PNG; a Kermany JPEG is under 3 MB.
# `pneumo predict/evaluate/shift --max-file-mb` default to it. A code constant beside MAX_PIXELS, not
# conf/: the training index applies it too, and neither it nor those commands compose a job's config.
MAX_FILE_MB = 32
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class ImageError(ValueError):
    """An image that cannot be used; str(error) is the reason, for reports."""


def decode(source: str | Path | bytes, size: int) -> np.ndarray:
    """Return a (size, size) uint8 gray array, or raise ImageError saying why."""
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("empty (0 bytes)")
        fp = io.BytesIO(source)
    else:
        fp = io.BytesIO(read(source))
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


def checked(path: str | Path, max_mb: float = MAX_FILE_MB) -> os.stat_result:
    """The file's stat (links followed) if it is a regular file of 1 byte to max_mb MiB, else ImageError.

    A FIFO, device or socket (or a link to one) is refused from its stat, never opened: reading a FIFO
    waits for a writer for ever, and /dev/zero never ends."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ImageError(f"unreadable: {e.strerror or e}") from None
    return _regular(st, max_mb)


def _regular(st: os.stat_result, max_mb: float) -> os.stat_result:
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a file")
        raise ImageError(f"not a regular file ({kind}): not opened")
    if st.st_size == 0:
        raise ImageError("empty file (0 bytes)")
    if st.st_size > max_mb * 2**20:
        raise ImageError(f"too large: {st.st_size / 2**20:,.0f} MB, over the limit of {max_mb:g} MB a file")
    return st


def read(path: str | Path, max_mb: float = MAX_FILE_MB) -> bytes:
    """The bytes of a regular file of at most max_mb MiB, or ImageError saying why not (checked)."""
    checked(path, max_mb)
    try:
        # O_NONBLOCK: a file swapped for a FIFO after the check opens without waiting; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ImageError(f"unreadable: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        try:
            _regular(os.fstat(fd), max_mb)
            data = f.read(int(max_mb * 2**20) + 1)  # grown since the check: read no more than the limit allows
        except OSError as e:
            raise ImageError(f"unreadable: {e.strerror or e}") from None
    if len(data) > max_mb * 2**20:
        raise ImageError(f"too large: over the limit of {max_mb:g} MB a file")
    if not data:
        raise ImageError("empty file (0 bytes)")
    return data


def header_pixels(data: bytes) -> int:
    """Width x height as the file's header states it (PIL reads the header only, decodes nothing);
    0 where decode() refuses the file before decoding it: not an image, or past MAX_PIXELS."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
    except Exception:  # noqa: BLE001 -- whatever PIL cannot open, decode() refuses undecoded
        return 0
    return w * h if w * h <= MAX_PIXELS else 0


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
