"""`pneumo data inspect | synth | download`: look at a data set before training on it.

register(subparsers) adds the `data` command to the main CLI; each subcommand
sets func(args) -> exit code. DataError becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections import Counter

from pneumo.config import paths
from pneumo.data.base import CLASSES, DataError, LeakageError

DEFAULT_CACHE = paths.ROOT / ".cache"


def _errors_to_exit(func):
    @functools.wraps(func)
    def run(args) -> int:
        try:
            return func(args)
        except DataError as e:
            print(f"pneumo data: error: {e}", file=sys.stderr)
            return 2

    return run


def _counts(entries, split_of) -> dict:
    c = Counter((split_of(i, e), CLASSES[e.label]) for i, e in enumerate(entries))
    splits = dict.fromkeys(s for s, _ in sorted(c, key=lambda k: ("train", "val", "test").index(k[0])))
    return {s: {name: c[(s, name)] for name in CLASSES} for s in splits}


def report(root: str, size: int, seed: int, cache_dir: str, workers: int = 0, progress: bool = True,
           test_root: str | None = None):
    """(the inspect report as a dict, Splits or None): what `load` would see for a folder."""
    from omegaconf import OmegaConf

    from pneumo.config import defaults
    from pneumo.data.cache import decoded
    from pneumo.data.loader import from_index
    from pneumo.data.loader import index as build_index

    cfg = OmegaConf.merge(defaults.option("data", "folder"), dict(root=root, seed=seed, cache_dir=cache_dir,
                                                                 workers=workers, test_root=test_root))
    index = build_index(cfg)
    _, row, bad = decoded(index, size, cache_dir, workers, progress)  # validates every image once
    usable = [e for e in index.entries if e.hash in row]
    by_hash = Counter(e.hash for e in usable)
    dup_groups = [[e.path for e in usable if e.hash == h] for h, n in sorted(by_hash.items()) if n > 1]
    skipped = list(index.skipped) + [(e.path, bad[e.hash]) for e in index.entries if e.hash in bad]
    out = dict(
        root=str(index.root), image_size=size, index_digest=index.digest,
        splits=_counts(usable, lambda i, e: e.split), images=len(usable),
        patients=len({e.patient for e in usable}),
        duplicates=dict(count=len(dup_groups), groups=dup_groups),
        skipped=[dict(path=p, reason=r) for p, r in skipped], ignored_metadata_files=index.ignored,
    )
    splits = None
    try:
        splits = from_index(index, cfg, size, progress)
        known = {p for p, _ in skipped}
        carved = {n: getattr(splits, n) for n in ("train", "val", "test")}
        out.update(
            digest=splits.digest, test_digest=splits.test_digest,
            carved={n: {**{c: int((s.y == k).sum()) for k, c in enumerate(CLASSES)},
                        "patients": len(set(s.patients))} for n, s in carved.items()},
            dropped=[dict(path=p, reason=r) for p, r in splits.skipped if p not in known],
            leakage=dict(ok=True, detail="no patient group or file content in two splits"),
        )
    except LeakageError as e:
        out.update(leakage=dict(ok=False, detail=str(e)))
    return out, splits


def _print_tables(rep: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for key, title in (("splits", "source folders"), ("carved", "after splitting (as load)")):
        table = Table(title=f"{rep['root']}: {title}")
        table.add_column("split")
        for name in (*CLASSES, "total", "% NORMAL"):
            table.add_column(name, justify="right")
        for split, c in rep.get(key, {}).items():
            total = c["NORMAL"] + c["PNEUMONIA"]
            share = f"{100 * c['NORMAL'] / max(total, 1):.1f}"
            table.add_row(split, str(c["NORMAL"]), str(c["PNEUMONIA"]), str(total), share)
        console.print(table)
    console.print(f"images {rep['images']}, patients {rep['patients']}, duplicate groups {rep['duplicates']['count']}, "
                  f"metadata files ignored {rep['ignored_metadata_files']}")
    for p, group in enumerate(rep["duplicates"]["groups"][:10]):
        console.print(f"  duplicate {p + 1}: {', '.join(group)}", highlight=False)
    for title, key in (("skipped", "skipped"), ("dropped from train/val (overlap with the source test/)", "dropped")):
        items = rep.get(key, [])
        if items:
            console.print(f"[bold]{title}: {len(items)}[/bold]")
            for s in items[:50]:
                console.print(f"  {s['path']}: {s['reason']}", highlight=False, markup=False)
    ok = rep["leakage"]["ok"]
    console.print(f"leakage: [{'green' if ok else 'red'}]{'none' if ok else 'FOUND'}[/] ({rep['leakage']['detail']})")
    if "digest" in rep:
        console.print(f"digest {rep['digest']}")


@_errors_to_exit
def inspect(args) -> int:
    rep, splits = report(args.root, args.size, args.seed, args.cache_dir, args.workers, progress=not args.json,
                         test_root=args.test_root)
    if args.plots:
        from pneumo.data import eda

        if splits is not None:
            rep["plots"] = [str(p) for p in eda.write_all(rep["splits"], rep["carved"], splits, args.plots)]
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        _print_tables(rep)
    return 0 if rep["leakage"]["ok"] else 1


@_errors_to_exit
def synth(args) -> int:
    from pneumo.data import synthetic

    out = synthetic.generate(args.out, args.n_images, args.size, args.normal_fraction, args.seed)
    n = {s: sum(1 for _ in (out / s).glob("*/*.jpeg")) for s in ("train", "test")}
    print(f"{out}: {n['train']} train + {n['test']} test images (inspect: pneumo data inspect {out})")
    return 0


@_errors_to_exit
def download(args) -> int:
    from pneumo.data import kaggle

    root = kaggle.ensure(args.dest, args.dataset, progress=True)
    print(f"{root}  (train with: data=kaggle, or data=folder data.root={root})")
    return 0


def register(subparsers) -> None:
    """Add `data` and its subcommands to the main CLI's subparsers (defaults: conf/'s)."""
    from pneumo.config import defaults

    data_cfg, trainer_cfg = defaults.option("data", "synthetic"), defaults.option("trainer", "default")

    data = subparsers.add_parser("data", help="inspect, generate or download a data set")
    sub = data.add_subparsers(dest="data_command", metavar="{inspect,synth,download}", required=True)

    p = sub.add_parser("inspect", help="counts, patients, duplicates, broken files and the leak-free split of ROOT")
    p.add_argument("root", help="a folder in the Kaggle layout (train/ [val/] [test/], each NORMAL/ PNEUMONIA/)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--plots", metavar="DIR", help="write class-count and sample-image PNGs to DIR")
    p.add_argument("--size", metavar="PX", type=int, default=trainer_cfg.image_size,
                   help="decode size, as trainer.image_size (shares load's cache)")
    p.add_argument("--seed", type=int, default=data_cfg.seed, help="split seed, as data.seed")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE / "data"), help="decode cache (default: %(default)s)")
    p.add_argument("--workers", type=int, default=data_cfg.workers, help="decode processes; 0 = one per core")
    p.add_argument("--test-root", help="a folder with NORMAL/ and PNEUMONIA/ to use as the test split (data.test_root)")
    p.set_defaults(func=inspect)

    p = sub.add_parser("synth", help="write the synthetic data set (Kaggle layout, Kermany names) to OUT")
    p.add_argument("out")
    p.add_argument("--n-images", type=int, default=data_cfg.n_images)
    p.add_argument("--size", metavar="PX", type=int, default=data_cfg.image_px, help="side of the written JPEGs")
    p.add_argument("--seed", type=int, default=data_cfg.seed)
    p.add_argument("--normal-fraction", type=float, default=data_cfg.normal_fraction)
    p.set_defaults(func=synth)

    p = sub.add_parser("download", help="download the Kaggle chest X-ray set once (needs Kaggle credentials)")
    p.add_argument("--dest", default=str(DEFAULT_CACHE / "kaggle"), help="download folder (default: %(default)s)")
    p.add_argument("--dataset", default=defaults.option("data", "kaggle").dataset)
    p.set_defaults(func=download)


def main(argv=None) -> int:
    """Standalone entry (python -m pneumo.commands.data ...), same as `pneumo data ...`."""
    parser = argparse.ArgumentParser(prog="pneumo")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
