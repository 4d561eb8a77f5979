"""The file index: every image under a Kaggle-layout root, with label, patient and content hash.

Layout: ROOT/{train,[val],[test]}/{NORMAL,PNEUMONIA}/*.{jpeg,jpg,png} (any case).
The real Kaggle archive nests a duplicate tree (chest_xray/chest_xray/) and ships
macOS metadata (__MACOSX/, ._* AppleDouble files, .DS_Store): the root is found
past them and the metadata is passed over, never indexed.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pneumo.data.base import CLASSES, DataError
from pneumo.data.cache import HashMemo
from pneumo.data.imaging import MAX_FILE_MB, ImageError, checked

SPLIT_DIRS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
LAYOUT = "ROOT/train/NORMAL/*.jpeg and ROOT/train/PNEUMONIA/*.jpeg (val/ and test/ optional)"
_ROOT_SEARCH_DEPTH = 3  # the Kaggle archive puts the real root 1-2 folders down

# Kermany names: personN_bacteria_M / personN_virus_M (independent counters, so the
# subtype is part of the key), IM-XXXX-YYYY and NORMAL2-IM-XXXX-YYYY (patient = up to XXXX).
_PERSON = re.compile(r"^person(\d+)_(bacteria|virus)_\d+", re.IGNORECASE)
_IM = re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+", re.IGNORECASE)


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the root, '/'-separated
    label: int  # index into CLASSES
    patient: str
    split: str  # the source folder: train, val or test
    hash: str  # sha256 hex of the file bytes


@dataclass(frozen=True)
class Index:
    root: Path
    entries: tuple  # Entry, sorted by path
    skipped: tuple  # (path, reason): files seen but not indexed
    ignored: int  # OS metadata files passed over (.DS_Store, ._*)
    test_root: Path | None = None  # an external folder that is the test split (data.test_root)

    @property
    def digest(self) -> str:
        """Identity of the indexed files: relative paths, labels, source splits, bytes."""
        h = hashlib.sha256()
        for e in self.entries:
            h.update(f"{e.split}\t{e.label}\t{e.path}\t{e.hash}\n".encode("utf-8", "surrogateescape"))  # non-UTF-8 names
        return h.hexdigest()

    def splits(self) -> tuple:
        return tuple(s for s in SPLIT_DIRS if any(e.split == s for e in self.entries))


def patient_id(filename: str) -> str:
    """Patient key of a Kermany file name; any other name is its own patient (its stem)."""
    name = Path(filename).name
    if m := _PERSON.match(name):
        return f"person{int(m.group(1))}_{m.group(2).lower()}"
    if m := _IM.match(name):
        return m.group(1).upper()
    return Path(name).stem


def is_kermany_name(filename: str) -> bool:
    name = Path(filename).name
    return bool(_PERSON.match(name) or _IM.match(name))


def is_metadata(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX" or name in ("Thumbs.db", "desktop.ini")


def find_root(path: str | Path) -> Path:
    """The folder holding train/: `path` itself or the shallowest one below it."""
    top = Path(path).expanduser()
    if not top.is_dir():
        raise DataError(f"data root {top} does not exist or is not a folder: expected {LAYOUT}")
    level = [top]
    for _ in range(_ROOT_SEARCH_DEPTH + 1):
        found = sorted(d for d in level if (d / "train").is_dir())
        if len(found) == 1:
            return found[0].resolve()
        if len(found) > 1:
            names = ", ".join(str(d) for d in found)
            raise DataError(f"{top} holds several data roots ({names}): pass one of them as the root")
        level = [c for d in level for c in sorted(d.iterdir()) if c.is_dir() and not is_metadata(c.name)]
    raise DataError(f"{top} has no train/ folder (searched {_ROOT_SEARCH_DEPTH} levels down): expected {LAYOUT}")


def _class_dirs(split_dir: Path) -> dict:
    dirs = {d.name: d for d in split_dir.iterdir() if d.is_dir() and not is_metadata(d.name)}
    unknown = sorted(set(dirs) - set(CLASSES))
    if unknown:
        raise DataError(
            f"{split_dir} has label folder(s) {', '.join(unknown)}: only {' and '.join(CLASSES)} "
            "are known; rename or remove them"
        )
    if not dirs:
        raise DataError(
            f"{split_dir} has no class folders: put the images in {split_dir}/NORMAL/ and {split_dir}/PNEUMONIA/"
        )
    for name in CLASSES:
        if name not in dirs:
            raise DataError(f"{split_dir / name} is missing: every split needs both NORMAL/ and PNEUMONIA/")
    return dirs


def _scan_classes(folder: Path, split: str, rel: str, hashes: HashMemo, entries: list, skipped: list,
                  max_mb: float = MAX_FILE_MB) -> int:
    """Index folder/{NORMAL,PNEUMONIA}/* as `split`, paths as rel/CLASS/name; returns metadata files passed over.
    A file that is not a regular one of at most max_mb MiB (a FIFO, a link to a device) is passed over
    from its stat: hashing it would wait for ever, or read for ever."""
    ignored, prefix = 0, f"{rel}/" if rel else ""
    for stray in sorted(folder.iterdir()):
        if stray.is_file() and not is_metadata(stray.name):
            skipped.append((f"{prefix}{stray.name}", "outside a class folder (NORMAL/ or PNEUMONIA/)"))
    for name, class_dir in sorted(_class_dirs(folder).items()):
        n_images, refused = 0, len(skipped)
        for f in sorted(class_dir.iterdir()):
            path = f"{prefix}{name}/{f.name}"
            if is_metadata(f.name):
                ignored += 1
            elif f.is_dir():
                skipped.append((path + "/", "a folder inside a class folder (not searched)"))
            elif f.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append((path, f"not an image file name (expected {', '.join(IMAGE_SUFFIXES)})"))
            else:
                try:
                    checked(f, max_mb)
                    digest = hashes(f, path)
                except ImageError as e:
                    skipped.append((path, str(e)))
                    continue
                except OSError as e:
                    skipped.append((path, f"unreadable: {e.strerror or e}"))
                    continue
                # A name that is not Kermany's says nothing about the patient: the file is its
                # own patient, keyed by its path so that '1.png' in two folders is not merged.
                patient = patient_id(f.name) if is_kermany_name(f.name) else path.rsplit(".", 1)[0]
                entries.append(Entry(path, CLASSES.index(name), patient, split, digest))
                n_images += 1
        if n_images == 0:
            unread = [(p, why) for p, why in skipped[refused:] if p.lower().endswith(IMAGE_SUFFIXES)]
            if unread:  # image files, each refused from its stat (empty, too large, not a regular file)
                raise DataError(f"{class_dir} has no readable images: {len(unread)} passed over (first: "
                                f"{unread[0][0]}: {unread[0][1]}); see the skipped files with `pneumo data inspect`")
            suffixes = ", ".join(IMAGE_SUFFIXES)
            raise DataError(f"{class_dir} has no images ({suffixes}): add some or remove the split")
    return ignored


def scan(root: Path, cache_dir: str | Path | None = None) -> Index:
    """Index every image under `root` (found by find_root); hashes every file not seen unchanged."""
    entries, skipped, ignored = [], [], 0
    hashes = HashMemo(root, cache_dir)
    for split in SPLIT_DIRS:
        if (root / split).is_dir():
            ignored += _scan_classes(root / split, split, split, hashes, entries, skipped)
    hashes.save()
    if not any(e.split == "train" for e in entries):
        raise DataError(f"{root} has no train/ folder: expected {LAYOUT}")
    return Index(root, tuple(sorted(entries, key=lambda e: e.path)), tuple(skipped), ignored)


def labelled_folder(path: str | Path) -> Path:
    """A folder holding NORMAL/ and PNEUMONIA/ (an external test set), checked."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist or is not a folder: expected {folder}/NORMAL/ and "
                        f"{folder}/PNEUMONIA/ with JPEG or PNG files")
    if not any((folder / c).is_dir() for c in CLASSES) and (folder / "test").is_dir():
        return labelled_folder(folder / "test")  # a Kaggle-layout root: its test/ is the labelled set
    return folder.resolve()


def scan_labelled(folder: str | Path, cache_dir: str | Path | None = None, max_mb: float = MAX_FILE_MB) -> Index:
    """Index a labelled folder (NORMAL/, PNEUMONIA/; or a Kaggle root's test/) as one test split."""
    folder = labelled_folder(folder)
    entries, skipped = [], []
    hashes = HashMemo(folder, cache_dir)
    ignored = _scan_classes(folder, "test", "", hashes, entries, skipped, max_mb)
    hashes.save()
    return Index(folder, tuple(sorted(entries, key=lambda e: e.path)), tuple(skipped), ignored)


def with_test_set(index: Index, folder: str | Path, cache_dir: str | Path | None = None) -> Index:
    """The index with `folder` (NORMAL/, PNEUMONIA/) as its test split instead of the source's own.

    The source's test/ is left out (neither trained nor tested on). Paths of the external
    files are relative to the source root ('../external/NORMAL/x.jpeg'), so decoding and
    digests work as for any entry.
    """
    entries, skipped = [e for e in index.entries if e.split != "test"], list(index.skipped)
    left_out = len(index.entries) - len(entries)
    hashes = HashMemo(index.root, cache_dir)
    try:
        folder = labelled_folder(folder)
        ignored = _scan_classes(folder, "test", os.path.relpath(folder, index.root), hashes, entries, skipped)
    except DataError as e:
        raise DataError(f"data.test_root: {e} (data.test_root=null uses the source's own test/)") from None
    hashes.save()
    if left_out:
        skipped.append((f"test/ ({left_out} images)", f"the source's own test split: data.test_root={folder} "
                                                     "is the test set instead"))
    return Index(index.root, tuple(sorted(entries, key=lambda e: e.path)), tuple(skipped), index.ignored + ignored,
                 test_root=folder)
