"""Find the image files of a catalog folder and fingerprint their content.

Example:
    >>> files = scan_folder("shop-photos")  # doctest: +SKIP
    >>> files[0].relpath, len(file_hash(files[0].abspath))  # doctest: +SKIP
    ('dresses/red.jpg', 64)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from stylefinder.catalog.images import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class CatalogFile:
    """An image file found in the catalog folder; `relpath` uses forward slashes."""

    relpath: str
    abspath: Path
    size: int
    mtime_ns: int


def scan_folder(root: str | Path, *, skip: list[Path] | None = None) -> list[CatalogFile]:
    """Every file with an image extension under `root`, recursively, sorted by path.

    Hidden files and folders (names starting with ".") and the folders in `skip` (for example
    an index directory kept inside the catalog) are left out. Symbolic links are followed once.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"catalog folder {root} does not exist or is not a folder")
    skipped = {Path(p).resolve() for p in skip or []}
    found: list[CatalogFile] = []
    for folder, subfolders, names in os.walk(root, followlinks=True):
        here = Path(folder)
        subfolders[:] = sorted(
            d for d in subfolders if not d.startswith(".") and (here / d).resolve() not in skipped
        )
        for name in names:
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            path = here / name
            try:
                stat = path.stat()
            except OSError:  # vanished or a dangling link: nothing to index
                continue
            if not path.is_file():
                continue
            relpath = path.relative_to(root).as_posix()
            found.append(CatalogFile(relpath, path, stat.st_size, stat.st_mtime_ns))
    found.sort(key=lambda f: f.relpath)
    return found


def file_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def bytes_hash(data: bytes) -> str:
    """SHA-256 of `data`, as hex (equal to `file_hash` of a file holding those bytes)."""
    return hashlib.sha256(data).hexdigest()
