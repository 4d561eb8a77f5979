"""`pneumo evaluate`: score a registered version on a labelled folder, recorded as a run nested under
the version's job (pneumo.release.score)."""

from __future__ import annotations

import sys

from pneumo.commands.predict import max_file_mb
from pneumo.evaluation import format
from pneumo.record import names


def register(sub, bootstrap: int) -> None:
    p = sub.add_parser("evaluate", help="score a registered version on a labelled folder (NORMAL/, PNEUMONIA/)")
    p.add_argument("root", metavar="ROOT", help="a folder with NORMAL/ and PNEUMONIA/ (or a Kaggle root with test/)")
    version_and_bootstrap(p, bootstrap, "patient-level resamples for the CIs")
    p.set_defaults(func=evaluate)


def version_and_bootstrap(p, bootstrap: int, resamples: str) -> None:
    """The options of a command that scores a registered version on a folder (evaluate, shift)."""
    p.add_argument("--model", default=names.CHAMPION_URI, help="a registered version's URI")
    p.add_argument("--bootstrap", type=int, default=bootstrap,
                   help=f"{resamples} (default %(default)s, as evaluation.bootstrap)")
    max_file_mb(p)


def evaluate(args) -> int:
    from pneumo.data import DataError
    from pneumo.record.entities import RecordError
    from pneumo.release import score
    from pneumo.runtime import quiet

    quiet.libraries(0)  # the model's Keras backend loads in evaluate(): its import chatter stays off the console
    try:
        r = score.evaluate(args.root, args.model, bootstrap=args.bootstrap, max_mb=args.max_file_mb)
    except DataError as e:
        print(f"pneumo evaluate: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, RecordError) as e:
        message = getattr(e, "message", str(e)).splitlines()[0]
        print(f"pneumo evaluate: cannot use {args.model}: {message}\n  list versions with `pneumo compare`, "
              f"or pass --model {names.version_uri(names.MODEL_NAME, '<version>')}", file=sys.stderr)
        return 2
    for path, why in r.unreadable:
        print(f"  skipped {path}: {why}", file=sys.stderr)
    print(f"version {r.version} on {r.folder}: {r.images} images, threshold {r.threshold:.4f} "
          f"(chosen on the job's validation split)")
    from pneumo.data.subtypes import SUBTYPES

    subtypes = tuple(names.subtype_metric(m, s) for m in names.SUBTYPE_METRICS for s in SUBTYPES)
    for name in names.TEST_METRICS + subtypes + names.DECIDED_METRICS:
        if names.finite(r.metrics.get(name)) is not None:
            print(f"  {name:18s} {format.metric(r.metrics, name, sep='  ')}")
    print(f"recorded as run {r.run_id} (experiment {r.experiment_id}), nested under the version's job")
    return 0
