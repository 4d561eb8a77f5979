"""`pneumo promote`: move an alias to the best version behind the gates (pneumo.release.gates), or roll back."""

from __future__ import annotations

import sys

from pneumo.record import names


def register(sub, confidence: float) -> None:
    from pneumo.release import gates

    p = sub.add_parser("promote", help="move the champion alias to the best version, behind gates")
    p.add_argument("--metric", default=names.TEST_AUC, choices=names.TEST_METRICS, help="rank and compare by")
    p.add_argument("--version", type=int, help="promote this version instead of the best")
    p.add_argument("--alias", default=names.CHAMPION)
    p.add_argument("--confidence", type=float, default=confidence,
                   help="of the paired bootstrap interval (default %(default)s, as evaluation.confidence)")
    p.add_argument("--min-sensitivity", type=float, default=gates.MIN_SENSITIVITY,
                   help="floor on the candidate's test sensitivity (default %(default)s)")
    p.add_argument("--min-specificity", type=float, default=gates.MIN_SPECIFICITY,
                   help="floor on the candidate's test specificity (default %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="decide and print, change nothing")
    p.add_argument("--force", action="store_true", help="override failed gates (needs --reason)")
    p.add_argument("--reason", help="why a forced promotion is justified; recorded on the version")
    p.add_argument("--rollback", action="store_true", help="give the alias back to the 'previous' version")
    p.set_defaults(func=promote)


def promote(args) -> int:
    from pneumo.record import store
    from pneumo.release import promote as promotion

    if args.force and not (args.reason or "").strip():
        print("pneumo promote: --force needs --reason TEXT (the reason is recorded on the version)", file=sys.stderr)
        return 2
    if args.rollback and (args.version is not None or args.force):
        print("pneumo promote: --rollback takes no --version or --force", file=sys.stderr)
        return 2
    opened = store.connect(writes=not args.dry_run)  # a missing store is refused, not created
    if not opened.versions():
        print(f"pneumo promote: no registered version of {names.MODEL_NAME} in {opened.uri}: "
              "run a sweep first, or point MLFLOW_TRACKING_URI at the store that holds them", file=sys.stderr)
        return 2
    try:
        if args.rollback:
            decision = promotion.rollback(args.alias, opened, dry_run=args.dry_run)
        else:
            decision = promotion.promote(args.metric, args.version, args.alias, confidence=args.confidence,
                                         min_sensitivity=args.min_sensitivity, min_specificity=args.min_specificity,
                                         dry_run=args.dry_run, force=args.force, reason=args.reason, store=opened)
    except ValueError as err:
        print(f"pneumo promote: {err}", file=sys.stderr)
        return 2
    except LookupError as err:
        print(f"pneumo promote: {err}", file=sys.stderr)
        return 1
    print(decision.summary())
    return 0 if decision.promoted or decision.noop else 1
