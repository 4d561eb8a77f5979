"""What one call of the served model may hold: rows, image bytes, pixels its headers declare.

Checked by the logged model (pneumo.release.serving) before it decodes anything, so a request
over a line is refused whole (a 400 from `mlflow models serve`) at the cost of reading headers;
`pneumo predict/evaluate/shift` cut their files into groups that fit (pneumo.release.predict).
Code constants, not conf/: they travel with the model's code, which carries no conf/.
One image past pneumo.data.imaging.MAX_PIXELS is refused in its own row, and counts nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pneumo.data.imaging import MAX_FILE_MB, header_pixels


@dataclass(frozen=True)
class Limits:
    rows: int  # images a request
    megabytes: float  # image bytes a request, in MiB (the files' own bytes: base64 text is 4/3 of them)
    pixels: int  # pixels a request, summed over the images' headers (what decoding would cost)


# 64 Kermany films (about 2,000 x 1,700 px and 0.5-3 MB each) fit; 4 films at the per-image cap
# (7,000 x 7,000) fit, and cost about 1.5 s of CPU to decode (30 of them took 10.8 s; issue 28).
# The JSON body of a request at the byte line is about 43 MB.
SERVED = Limits(rows=64, megabytes=MAX_FILE_MB, pixels=200_000_000)


class TooLarge(ValueError):
    """A request past a line of Limits; str() names the line, its value and the request's."""


def cost(blob) -> tuple[int, int]:
    """(bytes, header pixels) of one image file's bytes; (0, 0) for anything that is not bytes
    (refused in its own row)."""
    if not isinstance(blob, (bytes, bytearray)):
        return 0, 0
    return len(blob), header_pixels(bytes(blob))


def check(blobs: list, limits: Limits = SERVED) -> None:
    """Raise TooLarge if the images together are past a line of `limits`; header reads only."""
    if len(blobs) > limits.rows:
        raise TooLarge(f"{len(blobs)} images in one request; the limit is {limits.rows}: send them in smaller "
                       "requests")
    size = pixels = 0
    for b in blobs:
        n, p = cost(b)
        size, pixels = size + n, pixels + p
    if size > limits.megabytes * 2**20:
        raise TooLarge(f"{size / 2**20:.1f} MB of images in one request; the limit is {limits.megabytes:g} MB "
                       "(the files' bytes, before base64): send them in smaller requests")
    if pixels > limits.pixels:
        raise TooLarge(f"{pixels:,} pixels of images in one request; the limit is {limits.pixels:,} "
                       "(width x height summed over the images): send them in smaller requests")
