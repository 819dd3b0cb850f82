"""Embed files while they are still arriving: a feed sync hands each downloaded photo to
`EmbedAhead.add` as soon as it is written, a thread embeds it (and names its colours) while the
other photos download, and `build_index` then writes those vectors as they are (`prepared`),
so that downloading and embedding overlap instead of running one after the other.

Only what fits in `max_bytes` of vectors is embedded ahead (a huge feed's rest is embedded by
`build_index` as usual); a photo that fails to decode is left for `build_index` to report.

Example:
    >>> with EmbedAhead(embedder) as ahead:  # doctest: +SKIP
    ...     fetch_feed(feed, index_dir, on_image=ahead.add)
    ...     prepared = ahead.finish()
    >>> build_index(catalog, index_dir, embedder=embedder, prepared=prepared)  # doctest: +SKIP
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

from stylefinder.embed.base import Embedder
from stylefinder.jobs.build import PreparedVector
from stylefinder.recognize.recognition import image_colours
from stylefinder.recognize.taxonomy import predict_garments

#: The most memory the vectors embedded ahead take (a million 1280-d float32 vectors: 5 GB).
MAX_AHEAD_BYTES = 1 << 30
_END = None


class EmbedAhead:
    """A background thread that embeds the files given to `add` with `embedder`, naming
    their colours when `recognize` (and their category from the ImageNet head when
    `imagenet_categories`), as `build_index` would. Use it as a context manager: leaving the
    block stops the thread (what was embedded is dropped unless `finish` was called)."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        recognize: bool = True,
        imagenet_categories: bool = False,
        max_bytes: int = MAX_AHEAD_BYTES,
        progress: bool = False,
    ) -> None:
        self.embedder = embedder
        self.recognize = recognize
        self.imagenet_categories = imagenet_categories
        self.prepared: dict[str, PreparedVector] = {}
        self._limit = max(0, max_bytes // (4 * max(1, embedder.space.dim)))
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._progress = progress
        self._error: BaseException | None = None
        self._ended = False  # the thread has read the end of the queue
        self._thread = threading.Thread(target=self._run, name="embed-ahead", daemon=True)

    def __enter__(self) -> EmbedAhead:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop()

    def add(self, digest: str, path: str | Path) -> None:
        """Embed the file at `path` (content hash `digest`) when the thread gets to it; safe
        to call from any thread.

        Example:
            >>> ahead.add("9f86d0...", "shop-index/feed/images/sku-1/1.jpg")  # doctest: +SKIP
        """
        self._queue.put((digest, str(path)))

    def finish(self) -> dict[str, PreparedVector]:
        """Wait until every file added is embedded; the vectors by content hash. Raises what
        the embedding raised (a model that fails; a bad image is not an error here).

        Example:
            >>> len(ahead.finish())  # doctest: +SKIP
            118
        """
        self._stop()
        if self._error is not None:
            raise self._error
        return self.prepared

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()

    def _sources(self) -> Iterator[tuple[str, str]]:
        seen: set[str] = set()
        while (entry := self._queue.get()) is not _END:
            digest, path = entry
            if digest in seen or len(seen) >= self._limit:
                continue
            seen.add(digest)
            yield digest, path
        self._ended = True

    def _run(self) -> None:
        bar = _progress_bar(self._progress)
        annotate = image_colours if self.recognize else None
        try:
            for batch in self.embedder.embed_stream(self._sources(), annotate=annotate):
                categories = None
                if self.imagenet_categories and batch.probabilities is not None:
                    categories = predict_garments(batch.probabilities)
                for n, (digest, vector) in enumerate(zip(batch.keys, batch.vectors, strict=True)):
                    category = categories[n][0][0] if categories is not None else None
                    self.prepared[str(digest)] = PreparedVector(vector, batch.notes[n], category)
                if bar is not None:
                    bar.update(len(batch.keys) + len(batch.failures))
        except BaseException as exc:  # handed to `finish`, on the caller's thread
            self._error = exc
            while not self._ended and self._queue.get() is not _END:  # let `_stop` go on
                pass
        finally:
            if bar is not None:
                bar.close()


def _progress_bar(enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(unit="img", desc="embedding", position=1, dynamic_ncols=True)
