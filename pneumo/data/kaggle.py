"""Kaggle source: download once with the official client, extract safely, find the root.

`import kaggle` authenticates at import time (older clients raise without
credentials), so it is imported only inside _download_zip, after a check that
credentials exist. Credential values are never read into messages or logs.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

try:
    import fcntl
except ImportError:  # Windows: no lock (_lock); the temp-then-rename steps still keep files whole
    fcntl = None

from pneumo.data.base import DataError
from pneumo.data.index import find_root

CREDENTIALS_HELP = (
    "Kaggle credentials not found: save kaggle.json (Kaggle > Settings > API > Create New Token) as "
    "~/.kaggle/kaggle.json or in the folder named by $KAGGLE_CONFIG_DIR, or set the environment "
    "variables KAGGLE_USERNAME and KAGGLE_KEY (newer clients also accept KAGGLE_API_TOKEN); "
    "or download the archive yourself and use data=folder data.root=<its folder>"
)


def _config_dirs() -> list:
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return [Path(os.environ["KAGGLE_CONFIG_DIR"])]
    home = Path.home()
    return [home / ".kaggle", Path(os.environ.get("XDG_CONFIG_HOME", home / ".config")) / "kaggle"]


def has_credentials() -> bool:
    """Whether any credential the kaggle client reads is present (values are not read)."""
    env = os.environ
    if (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")) or env.get("KAGGLE_API_TOKEN"):
        return True
    files = ("kaggle.json", "access_token", "credentials.json")
    return any((d / f).is_file() for d in _config_dirs() for f in files)


def _download_zip(dataset: str, dest: Path) -> Path:
    """The one call to Kaggle's API (tests fake it): the dataset's zip in dest."""
    if not has_credentials():
        raise DataError(CREDENTIALS_HELP)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the client prints its own auth help
            import kaggle

            kaggle.api.authenticate()
    except (Exception, SystemExit) as e:  # noqa: BLE001 -- the message may quote config: name the type only
        raise DataError(f"Kaggle authentication failed ({type(e).__name__}); {CREDENTIALS_HELP}") from None
    try:
        kaggle.api.dataset_download_files(dataset, path=str(dest), quiet=False, unzip=False)
    except Exception as e:  # noqa: BLE001 -- whatever the client raises, the user gets one DataError
        raise DataError(_download_failed(dataset, e)) from None
    archive = dest / (dataset.split("/")[-1] + ".zip")
    if not archive.is_file():
        raise DataError(f"the Kaggle client finished but wrote no {archive.name} for {dataset}: check that "
                        "data.dataset (--dataset) names a dataset, owner/name as in its kaggle.com URL, then retry")
    return archive


def _download_failed(dataset: str, e: Exception) -> str:
    """What went wrong and what to do; never the exception's text (it may quote a URL or config)."""
    response = getattr(e, "response", None)
    status = getattr(response, "status_code", None) or getattr(e, "status", None)  # kaggle 2.x | 1.x
    if status == 401:
        return (f"Kaggle refused the credentials (HTTP 401) downloading {dataset}: they are wrong or revoked; "
                "create a new token (Kaggle > Settings > API > Create New Token) and save it as "
                "~/.kaggle/kaggle.json, or set KAGGLE_USERNAME and KAGGLE_KEY to its values")
    if status == 403:
        return (f"Kaggle denied access to {dataset} (HTTP 403): accept the dataset's terms on "
                f"https://www.kaggle.com/datasets/{dataset} with the account of your token, then retry")
    if status == 404:
        return (f"Kaggle has no dataset {dataset} (HTTP 404): check data.dataset (--dataset), owner/name as in "
                "its kaggle.com URL")
    if status is None and isinstance(e, OSError):  # requests' ConnectionError / Timeout, socket errors
        return (f"could not reach Kaggle to download {dataset} ({type(e).__name__}): check the network "
                "connection (and HTTPS_PROXY, if you need one), then retry; or download the archive yourself "
                "and use data=folder data.root=<its folder>")
    return (f"download of {dataset} failed ({type(e).__name__}{f', HTTP {status}' if status else ''}): check "
            "the network, the dataset name, and that its terms are accepted on kaggle.com, then retry")


def _check_member(name: str, target: Path, archive: Path) -> None:
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise DataError(f"{archive}: refused, member {name!r} has an absolute path (unsafe archive)")
    if ".." in posix.split("/"):
        raise DataError(f"{archive}: refused, member {name!r} climbs out of the target with '..' (unsafe archive)")
    if not (target / posix).resolve().is_relative_to(target.resolve()):
        raise DataError(f"{archive}: refused, member {name!r} resolves outside {target} (unsafe archive)")


class CorruptArchive(DataError):
    """An archive that cannot be read to the end; nothing of it was extracted."""


def extract(archive: Path, target: Path, progress: bool = True) -> Path:
    """Unzip into target (renamed into place when complete); every member checked first."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for m in members:
                _check_member(m.filename, target, archive)
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extract-"))
            try:
                bar = tqdm(total=sum(m.file_size for m in members), unit="B", unit_scale=True, desc="extract",
                           file=sys.stderr, disable=not (progress and sys.stderr.isatty()))
                with bar:
                    for m in members:
                        zf.extract(m, tmp)
                        bar.update(m.file_size)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # no zip at all, or a damaged member
        raise CorruptArchive(f"{archive} is not a valid zip ({type(e).__name__}: {e})") from None
    return target


@contextlib.contextmanager
def _lock(dest: Path):
    """One download per folder at a time: the jobs of a multirun start together."""
    if fcntl is None:
        yield
        return
    with open(dest / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def ensure(dest: str | Path, dataset: str, progress: bool = True) -> Path:
    """Download (once) and extract `dataset` under dest; return its Kaggle-layout root."""
    if not dest:
        raise DataError("data.root is not set: it names the folder the Kaggle download goes to")
    dest = Path(dest).expanduser()
    extracted = dest / "extracted"
    if extracted.is_dir():
        return find_root(extracted)
    dest.mkdir(parents=True, exist_ok=True)
    with _lock(dest):
        if not extracted.is_dir():  # another job may have finished while we waited
            archive = dest / (dataset.split("/")[-1] + ".zip")
            if not archive.is_file():
                # Into a temp folder first: an interrupted download never sits at the final name.
                tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".download-"))
                try:
                    os.replace(_download_zip(dataset, tmp), archive)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            try:
                extract(archive, extracted, progress)
            except CorruptArchive as e:
                # A download is renamed into place only when complete, so a corrupt archive is a
                # damaged copy: remove it, so the next try downloads it again instead of failing here.
                archive.unlink(missing_ok=True)
                raise DataError(f"{e}; removed it (nothing was extracted): run the download again, and if it "
                                "fails the same way, download the archive from kaggle.com yourself and use "
                                "data=folder data.root=<its extracted folder>") from None
            archive.unlink()  # the extracted tree is what is reused; halves the disk used
    return find_root(extracted)
