"""Which wheels the GPU machine needs: pneumo's dependencies, at a venv's versions, less what its image has.

    VENV/bin/python benchmarks/gpu/wheel_plan.py [--pyproject pyproject.toml]

Run with the interpreter of the venv whose versions the kit carries (make_kit.sh does). Walks the
requirements of pyproject.toml's [project] dependencies (no extras: no TensorFlow, no JAX) through
the distributions installed in that venv, with markers read as on the GPU machine (CPython 3.12,
Linux x86-64). A package of the GPU image (image-packages.txt) is not carried and not walked: the
image holds its own needs, unless the version recorded there misses a requirement: then the venv's
version is carried. A package of skip.txt is not carried and not walked: the GPU run never imports
it. Prints `NAME VERSION` per wheel to carry; notes go to stderr ("WARN ..."). Exit status 1
when a needed package is not installed in the venv (the plan would be incomplete).
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # a venv without packaging: pip vendors it
    from pip._vendor.packaging.requirements import Requirement
try:
    import tomllib
except ImportError:  # Python 3.10: pip vendors tomli, the same parser
    from pip._vendor import tomli as tomllib

HERE = Path(__file__).resolve().parent
# The GPU machine, for environment markers (python3 there: CPython 3.12.3).
TARGET = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython"}
# Distributions whose files the mlflow wheel already holds (mlflow 3 ships them again, file for
# file): not carried, but what they require is.
INSIDE = {"mlflow-skinny": "mlflow", "mlflow-tracing": "mlflow"}


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def listing(path: Path) -> dict[str, str | None]:
    """{canonical name: version or None} of a `name[==version]  # why` file."""
    out = {}
    for line in path.read_text().splitlines():
        body = line.split("#", 1)[0].strip()
        if body:
            name, _, version = body.partition("==")
            out[canon(name)] = version.strip() or None
    return out


def wanted(text: str, extras: set[str]) -> Requirement | None:
    req = Requirement(text)
    if req.marker is None or any(req.marker.evaluate({**TARGET, "extra": e}) for e in extras | {""}):
        return req
    return None


def plan(deps: list[str], image: dict, skip: dict) -> tuple[dict[str, str], list[str]]:
    """({name: version} to carry, the needed requirements the venv lacks)."""
    carry: dict[str, str] = {}
    missing, seen = [], set()
    todo = [(Requirement(d), "pyproject.toml") for d in deps]
    todo = [(r, why) for r, why in todo if r.marker is None or r.marker.evaluate({**TARGET, "extra": ""})]
    while todo:
        req, by = todo.pop(0)
        name = canon(req.name)
        have = image.get(name, "")
        if name in image and not (have and req.specifier and not req.specifier.contains(have, prereleases=True)):
            continue
        if name in image:
            print(f"note: {by} wants {req}, the GPU image has {have}: carrying the venv's", file=sys.stderr)
        if name in skip or name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(f"{req} (needed by {by})")
            continue
        if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
            print(f"WARN {by} wants {req}; the venv has {dist.version}", file=sys.stderr)
        if name not in INSIDE:
            carry[name] = dist.version
        todo += [(r, name) for r in (wanted(t, set(req.extras)) for t in dist.requires or []) if r is not None]
    return carry, missing


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pyproject", type=Path, default=HERE.parents[1] / "pyproject.toml")
    args = p.parse_args()
    deps = tomllib.loads(args.pyproject.read_text())["project"]["dependencies"]
    carry, missing = plan(deps, listing(HERE / "image-packages.txt"), listing(HERE / "skip.txt"))
    for name in missing:
        print(f"WARN not installed in {sys.prefix}: {name}", file=sys.stderr)
    for name, version in sorted(carry.items()):
        print(name, version)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
