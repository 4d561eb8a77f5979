"""A smaller copy of an image folder for the GPU kit: same layout, same file names.

    python benchmarks/gpu/make_data.py SRC_ROOT DST_ROOT [SIZE] [QUALITY]

Every image under SRC_ROOT (kermany-224: train/{NORMAL,PNEUMONIA}/*.jpeg; kermany-224-external:
{NORMAL,PNEUMONIA}/*.jpeg) goes to the same relative path under DST_ROOT, resized to SIZE x SIZE
(default 128) with LANCZOS and re-encoded as JPEG quality QUALITY (default 90) with optimized
Huffman tables (lossless: the same pixels as plain q90, ~9% fewer bytes), in the source's own mode
(3-channel JPEG with gray pixels). File names are kept: pneumo derives patient ids from them.
Other files (README, hidden files) are not copied. Decodes on all cores.
"""

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

SUFFIXES = {".jpeg", ".jpg", ".png"}


def one(job):
    src, out, size, quality = job
    out.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        mode, fmt = im.mode, im.format
        im = im.resize((size, size), Image.LANCZOS)
        assert im.mode == mode, (src, mode, im.mode)
        if fmt == "JPEG":
            im.save(out, "JPEG", quality=quality, optimize=True)
        else:
            im.save(out, fmt)
    return out.stat().st_size


def main() -> int:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 128
    quality = int(sys.argv[4]) if len(sys.argv) > 4 else 90
    files = sorted(f for f in src.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES
                   and not any(part.startswith(".") for part in f.relative_to(src).parts))
    if not files:
        print(f"make_data: no images under {src}", file=sys.stderr)
        return 1
    jobs = [(f, dst / f.relative_to(src), size, quality) for f in files]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        total = sum(pool.map(one, jobs, chunksize=64))
    print(f"{len(files)} images -> {dst} at {size}px, JPEG q{quality}, {total / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
