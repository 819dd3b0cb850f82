"""Find the image files of a catalog folder and fingerprint their content.

Example:
    >>> files = scan_folder("shop-photos")  # doctest: +SKIP
    >>> files[0].relpath, len(file_hash(files[0].abspath))  # doctest: +SKIP
    ('dresses/red.jpg', 64)
"""

from __future__ import annotations

import hashlib
import heapq
import os
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

from stylefinder.catalog.images import IMAGE_EXTENSIONS
from stylefinder.catalog.remote import is_remote, remote_info


@dataclass(frozen=True)
class CatalogFile:
    """An image file found in the catalog folder; `relpath` uses forward slashes. A file on
    object storage has its URI as both (see `catalog.remote`)."""

    relpath: str
    abspath: Path | str
    size: int
    mtime_ns: int


def scan_folder(root: str | Path, *, skip: list[Path] | None = None) -> list[CatalogFile]:
    """Every file with an image extension under `root`, recursively, sorted by path.

    Hidden files and folders (names starting with ".") and the folders in `skip` (for example
    an index directory kept inside the catalog) are left out. Symbolic links are followed, but
    each real folder is entered once and each real file is listed once: the catalog's own
    folders come first, then the links in sorted order, so a link to a folder or file that is
    already listed (or to a parent folder, a loop) adds nothing. A link to a folder outside
    `root` is followed (once); broken links are skipped.

    Example:
        >>> [f.relpath for f in scan_folder("shop-photos")]  # doctest: +SKIP
        ['dresses/red.jpg', 'tops/white.png']
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"catalog folder {root} does not exist or is not a folder")
    skipped = {Path(p).resolve() for p in skip or []} - {root, *root.parents}
    walk = _Walk(root, skipped)
    walk.folder(root, "", linked=False)
    while walk.links:  # links wait until every real path is listed, then go in sorted order
        relpath, path = heapq.heappop(walk.links)
        walk.link(path, relpath)
    walk.found.sort(key=lambda f: f.relpath)
    return walk.found


class _Walk:
    """The state of one `scan_folder` run: what was found, what was seen, links still to do."""

    def __init__(self, root: Path, skipped: set[Path]) -> None:
        self.skipped = skipped
        self.found: list[CatalogFile] = []
        self.links: list[tuple[str, Path]] = []  # a heap of (relpath, path)
        self.seen_folders: set[tuple[int, int]] = {_identity(root.stat())}
        self.seen_files: set[tuple[int, int]] = set()

    def folder(self, top: Path, top_rel: str, *, linked: bool) -> None:
        """List the files under `top` (already marked as seen) without following links.

        Hard links in the catalog's own folders are all listed; under a `linked` folder a file
        already listed is not listed again.
        """
        stack = [(top, top_rel)]
        while stack:
            folder, rel = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:  # unreadable or vanished: nothing to index there
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path, relpath = Path(entry.path), f"{rel}{entry.name}"
                if entry.is_symlink():
                    heapq.heappush(self.links, (relpath, path))
                elif entry.is_dir(follow_symlinks=False):
                    if self._enter(path):
                        stack.append((path, relpath + "/"))
                else:
                    self._add(path, relpath, once=linked)

    def link(self, path: Path, relpath: str) -> None:
        """Follow one symbolic link: into a folder not seen yet, or to a file not listed yet."""
        try:
            is_dir = path.is_dir()
        except OSError:
            return
        if is_dir:
            if self._enter(path):
                self.folder(path, relpath + "/", linked=True)
        else:
            self._add(path, relpath, once=True)

    def _enter(self, path: Path) -> bool:
        try:
            identity = _identity(path.stat())
            if identity in self.seen_folders:
                return False
            if self.skipped:  # resolving every folder of a catalog costs (one per product)
                real = path.resolve()
                if any(p in self.skipped for p in (real, *real.parents)):
                    return False
        except (OSError, RuntimeError):  # vanished, or a link loop that cannot be resolved
            return False
        self.seen_folders.add(identity)
        return True

    def _add(self, path: Path, relpath: str, *, once: bool) -> None:
        if Path(relpath).suffix.lower() not in IMAGE_EXTENSIONS:
            return
        try:
            stat = path.stat()
        except OSError:  # vanished or a dangling link: nothing to index
            return
        if not S_ISREG(stat.st_mode) or (once and _identity(stat) in self.seen_files):
            return
        self.seen_files.add(_identity(stat))
        self.found.append(CatalogFile(relpath, path, stat.st_size, stat.st_mtime_ns))


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


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


#: Web locations: not read from lists yet (product feeds, issue 22, bring them).
WEB_SCHEMES = ("http://", "https://")


def scan_list(list_file: str | Path) -> tuple[Path, list[CatalogFile], list[str]]:
    """The image files a text file lists, one per line, relative to the list's folder or
    absolute under it, or on object storage (`s3://...`, see `catalog.remote`; blank lines and
    lines starting with "#" are skipped): that folder (the catalog's root), the files sorted by
    path as `scan_folder` gives them (a remote one's path is its URI), and the problems of lines
    left out (no such file, outside the folder, not an image, listed twice, unreachable).

    Example:
        >>> root, files, problems = scan_list("shared/photos/batch-7.txt")  # doctest: +SKIP
        >>> [f.relpath for f in files], problems  # doctest: +SKIP
        (['dresses/red.jpg'], ['line 3: tops/gone.jpg: no such file'])
    """
    list_file = Path(list_file)
    root = list_file.resolve().parent
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{list_file}: a list of image paths must be UTF-8 text ({error})"
        ) from None
    found: dict[str, CatalogFile] = {}
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {number}: {line}"
        if line.lower().startswith(WEB_SCHEMES):
            problems.append(f"{where}: web addresses are not read from lists yet")
            continue
        if is_remote(line):
            _add_remote(line, where, found, problems)
            continue
        path = (root / line).resolve()
        if root not in path.parents:
            problems.append(f"{where}: outside the list's folder {root}")
            continue
        relpath = path.relative_to(root).as_posix()
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            problems.append(f"{where}: not an image file name")
        elif relpath in found:
            problems.append(f"{where}: listed twice")
        elif not path.is_file():
            problems.append(f"{where}: no such file")
        else:
            stat = path.stat()
            found[relpath] = CatalogFile(relpath, path, stat.st_size, stat.st_mtime_ns)
    return root, sorted(found.values(), key=lambda f: f.relpath), problems


def _add_remote(uri: str, where: str, found: dict[str, CatalogFile], problems: list[str]) -> None:
    """A listed object-storage image, from its store's metadata (nothing downloaded)."""
    if Path(uri.split("?", 1)[0]).suffix.lower() not in IMAGE_EXTENSIONS:
        problems.append(f"{where}: not an image file name")
        return
    if uri in found:
        problems.append(f"{where}: listed twice")
        return
    try:
        info = remote_info(uri)
    except OSError as error:
        problems.append(f"{where}: {error}")
        return
    if info is None:
        problems.append(f"{where}: no such file")
        return
    found[uri] = CatalogFile(uri, uri, *info)
