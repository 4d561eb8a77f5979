"""`pneumo shift`: do a folder's films look like the version's training films? No labels needed
(pneumo.release.shift); recorded as a run nested under the version's job."""

from __future__ import annotations

import sys

from pneumo.commands.evaluate import version_and_bootstrap
from pneumo.evaluation import format
from pneumo.record import names


def register(sub, bootstrap: int) -> None:
    p = sub.add_parser("shift", help="compare a folder of films (no labels) with a version's training films")
    p.add_argument("folder", metavar="FOLDER", help="JPEG/PNG films, in any layout")
    version_and_bootstrap(p, bootstrap, "resamples for the AUC's CI")
    p.set_defaults(func=shift)


def shift(args) -> int:
    from pneumo.record.entities import RecordError
    from pneumo.release import shift as check
    from pneumo.runtime import quiet

    quiet.libraries(0)
    try:
        r = check.check(args.folder, args.model, bootstrap=args.bootstrap, max_mb=args.max_file_mb)
    except check.ShiftError as e:
        print(f"pneumo shift: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, RecordError) as e:
        message = getattr(e, "message", str(e)).splitlines()[0]
        print(f"pneumo shift: cannot use {args.model}: {message}", file=sys.stderr)
        return 2
    for path, why in r.unreadable:
        print(f"  skipped {path}: {why}", file=sys.stderr)
    print(f"version {r.version} vs {r.folder}: {r.shift.images} films against {r.shift.reference} of the "
          f"training collection's validation films")
    print(f"  {r.shift.verdict}")
    print(f"  domain-classifier AUC {format.metric(r.metrics, names.SHIFT_AUC)} (0.5: indistinguishable)")
    print(f"  flagged out-of-distribution: {r.flagged:.1%}")
    for line in r.shift.differs:
        print(f"  {line}")
    print(f"recorded as run {r.run_id} (experiment {r.experiment_id}), nested under the version's job")
    return 0
