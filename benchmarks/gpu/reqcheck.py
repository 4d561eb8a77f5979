"""Check the carried wheels' requirements against what this machine has.

    python benchmarks/gpu/reqcheck.py SITE

For every distribution installed in SITE (the kit's wheels), each Requires-Dist (no extras,
markers evaluated here) is looked up in the whole environment (SITE first on sys.path when it
leads PYTHONPATH, then the machine's own packages). Prints one line per unmet requirement:
  MISSING   installed nowhere, and not left out on purpose (skip.txt, wheel_plan.INSIDE): a risk
  CONFLICT  installed at a version the requirement excludes: a risk (carry the right one:
            wheel_plan.py carries an image package whose recorded version misses a pin)
The requirements left out on purpose are counted on one line. Exit status 0: a report for run.log.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HERE = Path(__file__).resolve().parent


def main() -> int:
    sys.path.insert(0, str(HERE))
    from wheel_plan import INSIDE, listing

    expected = set(listing(HERE / "skip.txt")) | set(INSIDE)
    site = Path(sys.argv[1]).resolve()
    ours = list(metadata.distributions(path=[str(site)]))
    installed: dict[str, str] = {}
    for d in metadata.distributions():  # sys.path order: the first of a name is the one imported
        installed.setdefault(canonicalize_name(d.metadata["Name"]), d.version)
    unmet, skipped = 0, 0
    for d in sorted(ours, key=lambda d: d.metadata["Name"].lower()):
        for text in d.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            name = canonicalize_name(req.name)
            have = installed.get(name)
            if have is None and name in expected:
                skipped += 1
            elif have is None:
                print(f"MISSING   {d.metadata['Name']} {d.version} needs {req}")
                unmet += 1
            elif req.specifier and not req.specifier.contains(have, prereleases=True):
                print(f"CONFLICT  {d.metadata['Name']} {d.version} needs {req}; this machine has {have}")
                unmet += 1
    print(f"reqcheck: {len(ours)} carried distributions; {unmet} unmet requirements; "
          f"{skipped} left out on purpose (skip.txt, or inside the mlflow wheel)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
