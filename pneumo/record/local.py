"""A local store is one folder: its sqlite database and, beside it, the artifacts (one folder an
experiment), so that copying or deleting the folder copies or deletes everything.

MLflow records artifact locations as absolute paths (a relative one is resolved against the working
directory when an experiment is created), so a moved or copied store's database still names its old
folder. Where an experiment's folder of that name lies beside the database, that folder is the truth:
readers map the recorded locations onto it (`mapping`), and a command that writes records the new
folder first (`relocate`), so that its new runs, `mlflow ui` and `mlflow models serve` find
everything without the old folder.

A store that cannot be opened is refused here, naming it, before MLflow sees it: MLflow retries a
database it cannot open for ~100 s, and creates a missing sqlite file (a mistyped path became a new,
empty store). Nothing here imports MLflow at module level: `pneumo train` checks its store before
Hydra starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
import urllib.parse
import urllib.request
from pathlib import Path

from pneumo.config import paths
from pneumo.config.errors import StoreError

SQLITE = "sqlite:///"
HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every sqlite database file
# Every column in which MLflow 3 records an artifact location.
LOCATIONS = {"experiments": ("artifact_location",), "runs": ("artifact_uri",),
             "logged_models": ("artifact_location",), "model_versions": ("source", "storage_location")}


def database(uri: str, cwd: Path | None = None) -> Path | None:
    """The sqlite database file a URI names, absolute (a relative path is taken from cwd); None for a
    tracking server or another kind of database."""
    if not uri.startswith(SQLITE):
        return None
    path = Path(urllib.parse.unquote(uri[len(SQLITE):].partition("?")[0]))
    return path if path.is_absolute() else (cwd or Path.cwd()) / path


def check(uri: str, named: str, cwd: Path | None = None) -> tuple[Path | None, bool]:
    """(the database a local store URI names, whether an MLflow store is in it); (None, True) for a
    tracking server. Raises StoreError, starting with `named` (where the URI came from, and the URI),
    for what cannot become a store: a folder, a file that is not a database, another application's database."""
    scheme = urllib.parse.urlsplit(uri).scheme
    if scheme in ("", "file"):
        raise StoreError(f"{named} names a folder of files, not a database: use "
                         f"{SQLITE}<folder>/{paths.DATABASE} (a store folder) or a tracking server's http:// URL")
    db = database(uri, cwd)
    if db is None:
        return None, True
    where = named + (f" ({db})" if str(db) not in named else "")
    if db.is_dir():
        raise StoreError(f"{where} is a folder, not a database: name the database in it, "
                         f"{SQLITE}{db / paths.DATABASE}")
    tables = _tables(db, where)
    if tables and "experiments" not in tables:
        raise StoreError(f"{where} is an sqlite database but not an MLflow store (no experiments table)")
    return db, bool(tables)


def ready(uri: str, named: str, *, creates: bool, cwd: Path | None = None) -> Path | None:
    """`check`, then: a store that does not exist is created with `creates`, else refused."""
    db, there = check(uri, named, cwd)
    if db is None:
        return db
    if there:
        if creates:  # tables seen while another process may still be migrating them: wait for its lock
            with _locked(db):
                pass
        return db
    if not creates:
        empty = " (an empty file)" if db.exists() else ""
        raise StoreError(f"{named}{'' if str(db) in named else f' ({db})'}: no MLflow store there{empty}; "
                         "check the path, or run a sweep to create one")
    create(db)
    return db


def _tables(db: Path, where: str) -> set[str]:
    """The tables of an existing database file, read without writing; empty for a missing or empty file."""
    if not db.exists():
        return set()
    try:
        with open(db, "rb") as f:
            head = f.read(len(HEADER))
    except OSError as e:
        raise StoreError(f"{where} cannot be read: {e.strerror or e}") from None
    if not head:
        return set()
    if head != HEADER:
        raise StoreError(f"{where} is not an sqlite database")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{urllib.request.pathname2url(str(db))}?mode=ro",
                                                uri=True)) as con:
            return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as e:
        raise StoreError(f"{where} cannot be read as a database: {e}") from None


@contextlib.contextmanager
def _locked(db: Path):
    """The store's creation lock: parallel jobs (Hydra's joblib launcher) opening one new store would
    each create its tables ('table ... already exists')."""
    with open(db.with_name(db.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def create(db: Path) -> None:
    """A new store's tables, once, under the lock. MLflow's Default experiment (id 0) points under the
    store's artifact folder too, not under the working directory (in a job: Hydra's job folder)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db.parent.mkdir(parents=True, exist_ok=True)
    with _locked(db):
        SqlAlchemyStore(f"{SQLITE}{db}", (db.parent / paths.ARTIFACTS).as_uri()).engine.dispose()


def local_path(location: str) -> Path | None:
    """The folder a recorded artifact location names on this machine; None where it is not a local one."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path))
    return Path(location) if not parts.scheme and location.startswith("/") else None


def mapping(locations: list[str], db: Path) -> dict[str, str]:
    """recorded experiment location -> where it is now, for each experiment recorded as another store
    folder's <folder>/artifacts/<name> (a moved or copied store) whose folder of that name lies beside
    this database, or lies nowhere yet (its runs go beside the database). One whose artifacts exist
    only where recorded (a store made before they sat beside the database) stays as it is."""
    out = {}
    for recorded in locations:
        path = local_path(recorded or "")
        if path is None or path.parent.name != paths.ARTIFACTS:
            continue
        here = db.parent / paths.ARTIFACTS / path.name
        if path != here and (here.is_dir() or not path.exists()):
            out[recorded] = here.as_uri() if recorded.startswith("file:") else str(here)
    return out


def outside(location: str, db: Path) -> Path | None:
    """The local folder of a recorded location that lies outside the store's folder, else None."""
    path = local_path(location or "")
    return path if path is not None and not path.is_relative_to(db.parent) else None


def relocate(db: Path, moves: dict[str, str]) -> int:
    """Record the store's current folder: every location MLflow recorded under an old prefix is
    rewritten to the new one, in one transaction (MLflow has no API to change a location). Returns
    how many rows changed."""
    changed = 0
    with _locked(db), contextlib.closing(sqlite3.connect(db, timeout=60)) as con, con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, columns in LOCATIONS.items():
            for column in columns if table in tables else ():
                for old, new in moves.items():
                    changed += con.execute(
                        f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) '
                        f'WHERE "{column}" = ? OR substr("{column}", 1, ?) = ?',
                        (new, len(old) + 1, old, len(old) + 1, old + "/")).rowcount
    return changed
