"""Query vectors kept by the content hash of their image, so that `recognize` and then
`recommend` on one upload run the model once.

Example:
    >>> recent = RecentQueries(size=2)
    >>> recent.remember("abc", np.ones(3, np.float32))
    >>> recent.get("abc").tolist()
    [1.0, 1.0, 1.0]
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
from PIL import Image

from stylefinder.catalog.images import ImageSource
from stylefinder.catalog.scan import bytes_hash, file_hash
from stylefinder.errors import BadImageError

RECENT_QUERIES = 32  # query vectors kept (a recognize and the searches after it)


class RecentQueries:
    """A small thread-safe LRU of read-only query vectors by content hash."""

    def __init__(self, size: int = RECENT_QUERIES) -> None:
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str | None) -> np.ndarray | None:
        if digest is None:
            return None
        with self._lock:
            vector = self._vectors.get(digest)
            if vector is not None:
                self._vectors.move_to_end(digest)
            return vector

    def remember(self, digest: str | None, vector: np.ndarray) -> None:
        """Keep `vector` (made read-only: the searches of one upload share it)."""
        vector.setflags(write=False)
        if digest is None:  # a PIL image: no content hash to know it by
            return
        with self._lock:
            self._vectors[digest] = vector
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)


def content_hash(image: ImageSource) -> str | None:
    """The content hash of an image given as bytes or a path (None for a PIL image).

    Example:
        >>> len(content_hash(b"not even an image"))
        64
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes_hash(bytes(image))
    if isinstance(image, Image.Image):
        return None
    try:
        return file_hash(image)
    except FileNotFoundError as exc:
        raise BadImageError(f"{image}: file not found") from exc
    except OSError as exc:
        raise BadImageError(f"{image}: cannot read file ({exc})") from exc
