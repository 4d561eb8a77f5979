"""One job of the screen with and without AVX-512, on the same host, side by side.

    python benchmarks/isa.py [--repeats 2] [--isa AVX2] [-- overrides...]

TensorFlow's CPU convolutions are oneDNN's, which picks its instruction set at run time; oneDNN's
ONEDNN_MAX_CPU_ISA caps it. So on a host with AVX-512, a run under ONEDNN_MAX_CPU_ISA=AVX2 is the
same run with the kernels a host without AVX-512 gets (the rest of TensorFlow is built for AVX2
either way). It is not that host: its clock, caches and neighbours differ, so the ratio printed is
the part of the slowdown the instruction set explains.

Each repeat runs `pneumo sweep kermany-screen lever=baseline seed=0` (or the overrides given) once per
setting, alternating, each into a fresh store, through the installed `pneumo` script; the data cache
is shared (the default, or `paths.cache=...` among the overrides), warmed by an untimed first run.
Prints wall and CPU seconds (the job's process tree) per run and the median ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PNEUMO = Path(sys.executable).with_name("pneumo")


def job(overrides: list[str], isa: str | None, scratch: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one screen job into a fresh store under scratch."""
    store = Path(tempfile.mkdtemp(dir=scratch))
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([str(PNEUMO), "sweep", *overrides, f"tracking.store={store / 'mlruns'}",
                    f"hydra.sweep.dir={store / 'multirun'}"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(store, ignore_errors=True)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--isa", default="AVX2", help="the cap to compare with the default (oneDNN's names)")
    p.add_argument("overrides", nargs="*", default=[])
    args = p.parse_args()
    overrides = ["kermany-screen", "lever=baseline", "seed=0", *args.overrides]

    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    print(f"{os.cpu_count()} cores, avx512f: {'avx512f' in flags}; pneumo sweep {' '.join(overrides)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pneumo-isa-") as tmp:
        scratch = Path(tmp)
        job(overrides, None, scratch)  # warms the data cache; not timed
        rows: dict[str, list[tuple[float, float]]] = {"default": [], args.isa: []}
        for _ in range(args.repeats):
            for isa in (None, args.isa):
                wall, cpu = job(overrides, isa, scratch)
                rows[isa or "default"].append((wall, cpu))
                print(f"  {isa or 'default'}: wall {wall:.0f} s, cpu {cpu:.0f} s", flush=True)
    print("| oneDNN ISA | runs | wall s (median) | CPU s (median) | CPU vs default |\n|---|---:|---:|---:|---:|")
    base = statistics.median(c for _, c in rows["default"])
    for name, runs in rows.items():
        cpu = statistics.median(c for _, c in runs)
        print(f"| {name} | {len(runs)} | {statistics.median(w for w, _ in runs):.0f} | {cpu:.0f} | {cpu / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
