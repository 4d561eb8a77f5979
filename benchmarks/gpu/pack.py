"""Pack an MLflow store (mlflow.db + artifacts/) for the trip back from the GPU machine.

    python benchmarks/gpu/pack.py STORE OUTDIR [--part-mib 16] [--max-parts 5] [--max-total-mib 62]

Writes OUTDIR/mlruns.tgz, or OUTDIR/mlruns.tgz.part0, .part1, ... when it is larger than one part
(reassemble: cat mlruns.tgz.part* > mlruns.tgz). Paths in the archive start with mlruns/. When the
whole store does not fit in --max-parts parts and --max-total-mib, logged models' files are left
out, largest first, until it fits (the db and every run's own artifacts, what `pneumo compare`
and the MLflow UI read, stay); mlruns/PACKED.txt in the archive lists what was left out. The db
holds absolute artifact paths of the GPU machine: PACKED.txt names the store's path there.
Reads files only: no MLflow import.
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
import tempfile
import time
from pathlib import Path

MIB = 1 << 20


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def models(store: Path) -> list[Path]:
    """Logged models' artifact folders (MLflow 3: artifacts/<experiment>/models/<model id>), largest first."""
    return sorted((d for d in store.glob("artifacts/*/models/*") if d.is_dir()), key=size, reverse=True)


def tar(store: Path, out: Path, leave: list[Path]) -> None:
    note = [f"# pack.py: the store at {store} (artifact paths in mlflow.db point there)"]
    note += [f"left out: {d.relative_to(store.parent)} ({size(d) / MIB:.1f} MiB)" for d in leave]
    with tarfile.open(out, "w:gz", compresslevel=6) as t:
        t.add(store, arcname=store.name,
              filter=lambda ti: None if any(d == Path(store.parent, ti.name) or d in Path(store.parent, ti.name).parents
                                            for d in leave) else ti)
        data = ("\n".join(note) + "\n").encode()
        info = tarfile.TarInfo(f"{store.name}/PACKED.txt")
        info.size, info.mtime = len(data), int(time.time())
        t.addfile(info, io.BytesIO(data))


def split(tgz: Path, outdir: Path, part: int) -> list[Path]:
    if tgz.stat().st_size <= part:
        dest = outdir / "mlruns.tgz"
        dest.write_bytes(tgz.read_bytes())
        return [dest]
    out = []
    with open(tgz, "rb") as f:
        while chunk := f.read(part):
            out.append(outdir / f"mlruns.tgz.part{len(out)}")
            out[-1].write_bytes(chunk)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store", type=Path)
    p.add_argument("outdir", type=Path)
    p.add_argument("--part-mib", type=float, default=16, help="largest file that comes back")
    p.add_argument("--max-parts", type=int, default=5)
    p.add_argument("--max-total-mib", type=float, default=62, help="all parts together (what comes back: 64 MiB)")
    args = p.parse_args()
    store = args.store.resolve()
    part = int(args.part_mib * MIB) - 4096  # a little under the limit: tar and gzip round nothing, but be safe
    limit = min(args.max_total_mib * MIB, args.max_parts * part)
    if not (store / "mlflow.db").is_file():
        print(f"pack: {store} has no mlflow.db: nothing to pack", file=sys.stderr)
        return 1
    print(f"pack: store {store}, {size(store) / MIB:.1f} MiB")
    candidates = models(store)
    with tempfile.TemporaryDirectory(prefix="pneumo-pack-") as tmp:
        tgz = Path(tmp) / "mlruns.tgz"
        for n in range(len(candidates) + 1):  # leave out the n largest logged models
            tar(store, tgz, candidates[:n])
            print(f"pack: {n} logged models left out: {tgz.stat().st_size / MIB:.1f} MiB compressed")
            if tgz.stat().st_size <= limit:
                break
        else:
            print(f"pack: does not fit in {limit / MIB:.0f} MiB even without logged models", file=sys.stderr)
            return 1
        args.outdir.mkdir(parents=True, exist_ok=True)
        for f in split(tgz, args.outdir, part):
            print(f"pack: wrote {f} ({f.stat().st_size / MIB:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
