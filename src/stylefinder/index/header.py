"""The immutable facts of an index (its header.json) and the names of the files in its folder.

Example:
    >>> header = read_header("my-index")  # doctest: +SKIP
    >>> header.space.describe()  # doctest: +SKIP
    'efficientnet_lite0 (gem pooling, 1280 dims)'
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from stylefinder._version import __version__
from stylefinder.errors import DamagedIndexError, IndexStateError
from stylefinder.io.files import atomic_write
from stylefinder.types import EmbeddingSpace

FORMAT = 1
HEADER_FILE = "header.json"
MANIFEST_FILE = "manifest.sqlite"
LOCK_FILE = ".lock"
REBUILD_HINT = "rebuild it with `stylefinder index CATALOG_DIR --index {directory} --rebuild`"


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string with seconds.

    Example:
        >>> utc_now()  # doctest: +SKIP
        '2026-12-01T10:00:00+00:00'
    """
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class IndexHeader:
    """The immutable facts of an index, stored as header.json."""

    backbone: str
    pooling: str
    dim: int
    weights_fingerprint: str
    version: str
    created_at: str
    format: int = FORMAT
    precision: str = "fp32"

    @property
    def space(self) -> EmbeddingSpace:
        return EmbeddingSpace(
            self.backbone, self.pooling, self.weights_fingerprint, self.dim, self.precision
        )

    @classmethod
    def for_space(cls, space: EmbeddingSpace) -> IndexHeader:
        return cls(
            backbone=space.backbone,
            pooling=space.pooling,
            dim=space.dim,
            weights_fingerprint=space.weights_fingerprint,
            version=__version__,
            created_at=utc_now(),
            precision=space.precision,
        )


def read_header(directory: str | Path) -> IndexHeader:
    """The header of the index at `directory`; `IndexStateError` (`DamagedIndexError` for a
    damaged file) saying what to do when there is none or this version cannot read it.

    Example:
        >>> read_header("my-index").dim  # doctest: +SKIP
        1280
    """
    directory = Path(directory)
    header_path = directory / HEADER_FILE
    if not header_path.is_file():
        raise IndexStateError(
            f"no index at {directory} (missing {HEADER_FILE}); build one with "
            f"`stylefinder index CATALOG_DIR --index {directory}`"
        )
    try:
        raw = json.loads(header_path.read_text(encoding="utf-8"))
        header = IndexHeader(**raw)
    except (ValueError, TypeError) as exc:
        hint = REBUILD_HINT.format(directory=directory)
        raise DamagedIndexError(f"{header_path} is damaged ({exc}); {hint}") from exc
    if header.format > FORMAT:
        raise IndexStateError(
            f"{directory} uses index format {header.format}; this stylefinder reads "
            f"format {FORMAT} at most. Upgrade stylefinder."
        )
    return header


def write_header(directory: Path, header: IndexHeader) -> None:
    """Write `header` as `directory`/header.json, atomically."""
    text = json.dumps(asdict(header), indent=2) + "\n"
    atomic_write(directory / HEADER_FILE, text.encode("utf-8"))
