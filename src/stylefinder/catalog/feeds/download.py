"""Download product images: concurrent, pooled, polite, and suspicious of what comes back.

The transfers run on libcurl's multi interface (`transfers.run_transfers`): at most
`workers` at once and `per_host` against one host, with connect and read timeouts and an
overall deadline; 5xx and 429 answers are retried with exponential backoff, honouring
`Retry-After` up to `max_retry_after` seconds; redirects are followed up to `max_redirects`.
A body is abandoned past `max_bytes`; what arrives is sniffed by Pillow (the Content-Type
header is not trusted), refused past `max_pixels`, and decoded unless it is a JPEG or PNG
that ends as a whole file does (a cut-off one is decoded, and reported truncated). A re-fetch
sends `If-None-Match` / `If-Modified-Since` from the last answer's ETag / Last-Modified.

Every outcome is a `Fetched`, never an exception: a failure carries one of the `FAILURE_*`
reasons and a detail for people.

Example:
    >>> with Downloader(DownloadOptions(per_host=4)) as downloader:  # doctest: +SKIP
    ...     fetched = downloader.fetch("https://cdn.shop.example/dress.jpg")
    >>> fetched.status, fetched.extension, len(fetched.sha256)  # doctest: +SKIP
    ('downloaded', 'jpg', 64)
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from stylefinder.catalog.feeds.transfers import (
    FAILURE_CONNECTION,
    FAILURE_REDIRECTS,
    FAILURE_TIMEOUT,
    FAILURE_TLS,
    FAILURE_TOO_LARGE,
    FAILURE_TRUNCATED,
    RETRY_STATUSES,
    Answer,
    DownloadOptions,
    Request,
    run_transfers,
)
from stylefinder.catalog.images import DEFAULT_MAX_PIXELS, SUPPORTED_FORMATS, load_image
from stylefinder.errors import BadImageError, ImageTooLargeError

__all__ = [
    "FAILURE_CONNECTION",
    "FAILURE_NOT_IMAGE",
    "FAILURE_REDIRECTS",
    "FAILURE_TIMEOUT",
    "FAILURE_TLS",
    "FAILURE_TOO_LARGE",
    "FAILURE_TRUNCATED",
    "GONE_STATUSES",
    "RETRY_STATUSES",
    "DownloadOptions",
    "Downloader",
    "Fetched",
    "Validators",
    "http_failure",
    "sniff_image",
]

FAILURE_NOT_IMAGE = "not an image"
#: Answers that say an image is gone for good (its old copy is removed); a failure for any
#: other reason keeps the copy downloaded before.
GONE_STATUSES = frozenset({404, 410})
#: File name extension of each format Pillow recognized.
EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
}


def http_failure(status: int) -> str:
    """The failure reason of an HTTP status.

    Example:
        >>> http_failure(404), http_failure(503)
        ('http 404', 'http 503')
    """
    return f"http {status}"


@dataclass(frozen=True)
class Validators:
    """What the last answer for a URL said of its version, for a conditional GET."""

    etag: str | None = None
    last_modified: str | None = None

    def headers(self) -> dict[str, str]:
        found = {"If-None-Match": self.etag, "If-Modified-Since": self.last_modified}
        return {name: value for name, value in found.items() if value}


@dataclass
class Fetched:
    """The outcome for one URL: `status` "downloaded" (with `data`), "not_modified" (a 304 to a
    conditional GET) or "failed" (with `reason` and `detail`)."""

    url: str
    status: str
    data: bytes | None = None
    extension: str | None = None
    sha256: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    reason: str | None = None
    detail: str = ""
    http_status: int | None = None
    seconds: float = 0.0
    attempts: list[int] = field(default_factory=list)  # statuses answered, retries included


def _failed(url: str, reason: str, detail: str, status: int | None = None) -> Fetched:
    return Fetched(url, "failed", reason=reason, detail=detail, http_status=status)


class Downloader:
    """Fetches URLs with `options`; use it as a context manager.

    Example:
        >>> with Downloader() as downloader:  # doctest: +SKIP
        ...     results = list(downloader.fetch_all([("https://shop.example/a.jpg", None)]))
    """

    def __init__(self, options: DownloadOptions | None = None) -> None:
        self.options = options or DownloadOptions()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing is held between calls (each call's connections end with it)."""

    def fetch(
        self,
        url: str,
        validators: Validators | None = None,
        *,
        check_image: bool = True,
        max_bytes: int | None = None,
    ) -> Fetched:
        """Fetch one URL (a conditional GET when `validators` are given); never raises for a
        network or content problem. `check_image=False` fetches any bytes (a feed).

        Example:
            >>> Downloader().fetch("https://shop.example/gone.jpg").reason  # doctest: +SKIP
            'http 404'
        """
        request = Request(url, validators.headers() if validators else {}, max_bytes)
        (answer,) = run_transfers([request], self.options)
        return self._fetched(answer, check_image)

    def fetch_all(
        self,
        requests: Iterable[tuple[str, Validators | None]],
        *,
        then: Callable[[Fetched], None] | None = None,
    ) -> Iterator[Fetched]:
        """Fetch many URLs, `workers` at once; yields each outcome as it completes (in no
        particular order). `then(fetched)`, when given, runs first (to write the file while
        the other transfers go on in libcurl); its exceptions propagate here.

        Example:
            >>> with Downloader() as d:  # doctest: +SKIP
            ...     statuses = {f.url: f.status for f in d.fetch_all([(url, None)])}
        """
        wanted = (
            Request(url, validators.headers() if validators else {}) for url, validators in requests
        )
        for answer in run_transfers(wanted, self.options):
            fetched = self._fetched(answer, check_image=True)
            if then is not None:
                then(fetched)
            yield fetched

    def _fetched(self, answer: Answer, check_image: bool) -> Fetched:
        fetched = self._read(answer, check_image)
        fetched.seconds = answer.seconds
        fetched.attempts = answer.attempts
        return fetched

    def _read(self, answer: Answer, check_image: bool) -> Fetched:
        url, status = answer.request.url, answer.status
        if answer.problem is not None:
            return _failed(url, answer.problem, answer.detail, status)
        etag = answer.headers.get("etag")
        last_modified = answer.headers.get("last-modified")
        if status == 304:
            return Fetched(
                url, "not_modified", etag=etag, last_modified=last_modified, http_status=304
            )
        if status != 200:
            retried = sum(s in RETRY_STATUSES for s in answer.attempts) - 1
            detail = f"HTTP {status} {answer.reason}".strip()
            if status in RETRY_STATUSES:
                detail += f" after {retried} retries"
            return _failed(url, http_failure(status or 0), detail, status)
        data = answer.body or b""
        fetched = Fetched(
            url, "downloaded", data=data, etag=etag, last_modified=last_modified, http_status=200
        )
        fetched.sha256 = hashlib.sha256(data).hexdigest()
        if check_image:
            problem = sniff_image(data, self.options.max_pixels)
            if isinstance(problem, tuple):
                return _failed(url, *problem, 200)
            fetched.extension = problem
        return fetched


def sniff_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | tuple[str, str]:
    """The file extension of an image's bytes, told by Pillow from the content (decoded, so
    that a cut-off file is caught, unless `_ends_whole`), or (reason, detail) when they are not
    a usable image.

    Example:
        >>> sniff_image(b"<html>hello</html>")
        ('not an image', 'not an image file (or an unsupported format)')
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        return FAILURE_NOT_IMAGE, "empty body"
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return FAILURE_NOT_IMAGE, "not an image file (or an unsupported format)"
    except Image.DecompressionBombError as error:
        return FAILURE_TOO_LARGE, str(error)
    except (OSError, ValueError, SyntaxError) as error:
        return FAILURE_NOT_IMAGE, f"cannot open image ({error})"
    if image.format not in SUPPORTED_FORMATS:
        return FAILURE_NOT_IMAGE, f"unsupported image format {image.format}"
    extension = EXTENSIONS.get(image.format or "", "img")
    width, height = image.size
    if 0 < width * height <= max_pixels and _ends_whole(data, image.format):
        return extension  # the embedder decodes it anyway: a whole file needs no decode here
    try:
        load_image(image, max_pixels=max_pixels, draft_size=64)
    except ImageTooLargeError as error:
        return FAILURE_TOO_LARGE, error.reason
    except BadImageError as error:
        truncated = "truncated" in str(error).lower() or "broken data" in str(error).lower()
        return (FAILURE_TRUNCATED if truncated else FAILURE_NOT_IMAGE), error.reason
    return extension


#: The last bytes of a whole JPEG (its end-of-image marker) and of a whole PNG (its IEND chunk).
_TRAILERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}


def _ends_whole(data: bytes, image_format: str | None) -> bool:
    r"""Whether a JPEG or PNG body ends as a whole file does (a cut-off one does not), so that
    it need not be decoded to be trusted; other formats (and a JPEG with bytes after its end
    marker) are decoded instead. Decoding a large JPEG even at 1/8 scale costs about 0.7 ms,
    which the downloads would take from the embedding they overlap with.

    Example:
        >>> _ends_whole(b"\x89PNG...IEND\xaeB`\x82", "PNG"), _ends_whole(b"\xff\xd8...", "JPEG")
        (True, False)
    """
    trailer = _TRAILERS.get(image_format or "")
    return trailer is not None and data.rstrip(b"\0\r\n")[-len(trailer) :] == trailer
