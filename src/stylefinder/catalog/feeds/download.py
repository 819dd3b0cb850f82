"""Download product images: concurrent, pooled, polite, and suspicious of what comes back.

One `Downloader` keeps a connection pool per host (urllib3's `PoolManager`) and lets at most
`per_host` requests run against one host at a time. Each request has connect and read timeouts
and an overall deadline; 5xx and 429 answers are retried with exponential backoff, honouring
`Retry-After` up to `max_retry_after` seconds; redirects are followed up to `max_redirects`.
The body is streamed and abandoned past `max_bytes`; what arrives is sniffed by Pillow (the
Content-Type header is not trusted), refused past `max_pixels`, and decoded unless it is a JPEG
or PNG that ends as a whole file does (a cut-off one is decoded, and reported truncated). A re-fetch
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
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from stylefinder._version import __version__
from stylefinder.catalog.images import DEFAULT_MAX_PIXELS, SUPPORTED_FORMATS, load_image
from stylefinder.errors import BadImageError, ImageTooLargeError

FAILURE_TIMEOUT = "timeout"
FAILURE_NOT_IMAGE = "not an image"
FAILURE_TOO_LARGE = "too large"
FAILURE_TRUNCATED = "truncated"
FAILURE_TLS = "tls error"
FAILURE_CONNECTION = "connection error"
FAILURE_REDIRECTS = "too many redirects"
#: Answers that say an image is gone for good (its old copy is removed); a failure for any
#: other reason keeps the copy downloaded before.
GONE_STATUSES = frozenset({404, 410})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
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
CHUNK_BYTES = 64 * 1024


def http_failure(status: int) -> str:
    """The failure reason of an HTTP status.

    Example:
        >>> http_failure(404), http_failure(503)
        ('http 404', 'http 503')
    """
    return f"http {status}"


@dataclass(frozen=True)
class DownloadOptions:
    """How images are fetched; the defaults suit a shop's CDN.

    Example:
        >>> DownloadOptions(read_timeout=5).connect_timeout
        5.0
    """

    workers: int = 16
    per_host: int = 8
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    deadline: float = 120.0  # seconds for one image, retries and redirects included
    retries: int = 3
    backoff_factor: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 60.0
    max_redirects: int = 5
    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = DEFAULT_MAX_PIXELS
    user_agent: str = f"stylefinder/{__version__} (product feed sync)"


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
    """A pool of connections and threads that fetches URLs; use it as a context manager.

    Example:
        >>> with Downloader() as downloader:  # doctest: +SKIP
        ...     results = list(downloader.fetch_all([("https://shop.example/a.jpg", None)]))
    """

    def __init__(self, options: DownloadOptions | None = None) -> None:
        import urllib3

        self.options = options or DownloadOptions()
        self._urllib3 = urllib3
        self._pool = urllib3.PoolManager(
            num_pools=64,
            maxsize=self.options.per_host,
            headers={"User-Agent": self.options.user_agent, "Accept": "image/*,*/*;q=0.5"},
        )
        self._hosts: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.clear()

    def _retry(self):
        options = self.options
        return self._urllib3.Retry(
            total=None,
            connect=options.retries,
            read=options.retries,
            status=options.retries,
            other=0,
            redirect=options.max_redirects,
            status_forcelist=RETRY_STATUSES,
            backoff_factor=options.backoff_factor,
            backoff_max=options.backoff_max,
            respect_retry_after_header=True,
            retry_after_max=int(options.max_retry_after),
            raise_on_status=False,
            raise_on_redirect=True,
        )

    def _host_slot(self, url: str) -> threading.BoundedSemaphore:
        host = urlsplit(url).netloc.lower()
        with self._lock:
            if host not in self._hosts:
                self._hosts[host] = threading.BoundedSemaphore(self.options.per_host)
            return self._hosts[host]

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
        started = time.perf_counter()
        with self._host_slot(url):
            fetched = self._fetch(url, validators, check_image, max_bytes or self.options.max_bytes)
        fetched.seconds = time.perf_counter() - started
        return fetched

    def fetch_all(
        self,
        requests: Iterable[tuple[str, Validators | None]],
        *,
        then: Callable[[Fetched], None] | None = None,
    ) -> Iterator[Fetched]:
        """Fetch many URLs on `workers` threads; yields each outcome as it completes (in no
        particular order). `then(fetched)`, when given, runs on the worker thread first (to
        write the file while other downloads go on); its exceptions propagate here.

        Example:
            >>> with Downloader() as d:  # doctest: +SKIP
            ...     statuses = {f.url: f.status for f in d.fetch_all([(url, None)])}
        """

        def work(url: str, validators: Validators | None) -> Fetched:
            fetched = self.fetch(url, validators)
            if then is not None:
                then(fetched)
            return fetched

        with ThreadPoolExecutor(self.options.workers, thread_name_prefix="feed-download") as pool:
            futures = [pool.submit(work, url, validators) for url, validators in requests]
            try:
                for future in as_completed(futures):
                    yield future.result()
            finally:
                for future in futures:
                    future.cancel()

    def _fetch(
        self, url: str, validators: Validators | None, check_image: bool, max_bytes: int
    ) -> Fetched:
        errors = self._urllib3.exceptions
        options = self.options
        deadline = time.monotonic() + options.deadline
        headers = validators.headers() if validators else {}
        try:
            response = self._pool.request(
                "GET",
                url,
                headers=headers,
                retries=self._retry(),
                timeout=self._urllib3.Timeout(
                    connect=options.connect_timeout, read=options.read_timeout
                ),
                preload_content=False,
                decode_content=True,
            )
        except errors.MaxRetryError as error:
            return _failed(url, *_network_reason(error.reason, errors))
        except (errors.HTTPError, OSError, ValueError) as error:  # a malformed URL, ...
            return _failed(url, *_network_reason(error, errors))
        try:
            return self._read(url, response, check_image, max_bytes, deadline, errors)
        finally:
            response.release_conn()

    def _read(self, url, response, check_image, max_bytes, deadline, errors) -> Fetched:
        status = response.status
        history = [entry.status for entry in response.retries.history if entry.status]
        history.append(status)
        etag = response.headers.get("ETag")
        last_modified = response.headers.get("Last-Modified")
        if status == 304:
            response.drain_conn()
            return Fetched(
                url,
                "not_modified",
                etag=etag,
                last_modified=last_modified,
                http_status=304,
                attempts=history,
            )
        if status != 200:
            response.drain_conn()
            retried = sum(s in RETRY_STATUSES for s in history) - 1
            detail = f"HTTP {status} {response.reason or ''}".strip()
            if status in RETRY_STATUSES:
                detail += f" after {retried} retries"
            failed = _failed(url, http_failure(status), detail, status)
            failed.attempts = history
            return failed
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            return _failed(
                url,
                FAILURE_TOO_LARGE,
                f"Content-Length {int(declared):,} bytes is over {max_bytes:,}",
                200,
            )
        body = bytearray()
        try:
            for chunk in response.stream(CHUNK_BYTES):
                body += chunk
                if len(body) > max_bytes:
                    return _failed(url, FAILURE_TOO_LARGE, f"over {max_bytes:,} bytes", 200)
                if time.monotonic() > deadline:
                    return _failed(
                        url,
                        FAILURE_TIMEOUT,
                        f"still downloading after {self.options.deadline:g} s",
                        200,
                    )
        except errors.ProtocolError as error:
            return _failed(url, *_body_reason(error, len(body), errors), 200)
        except (errors.HTTPError, OSError) as error:
            return _failed(url, *_network_reason(error, errors), 200)
        data = bytes(body)
        fetched = Fetched(
            url,
            "downloaded",
            data=data,
            etag=etag,
            last_modified=last_modified,
            http_status=200,
            attempts=history,
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


def _network_reason(error: BaseException | None, errors) -> tuple[str, str]:
    """(reason, detail) of a request that got no usable answer."""
    detail = str(error) if error is not None else "no answer"
    if isinstance(error, errors.ResponseError) and "redirect" in str(error).lower():
        return FAILURE_REDIRECTS, detail
    if isinstance(error, errors.NewConnectionError):  # refused, no such host (not a timeout)
        return FAILURE_CONNECTION, detail
    if isinstance(error, (errors.TimeoutError, TimeoutError)):
        return FAILURE_TIMEOUT, detail
    if isinstance(error, (errors.SSLError, ssl.SSLError)):
        return FAILURE_TLS, detail
    if isinstance(error, errors.ProtocolError) and "timed out" in detail:
        return FAILURE_TIMEOUT, detail
    if isinstance(error, (errors.LocationValueError, ValueError)):
        return FAILURE_CONNECTION, f"bad address ({detail})"
    return FAILURE_CONNECTION, detail


def _body_reason(error: BaseException, received: int, errors) -> tuple[str, str]:
    """(reason, detail) of a body that broke off."""
    if "timed out" in str(error).lower():
        return FAILURE_TIMEOUT, f"read timed out after {received:,} bytes"
    return FAILURE_TRUNCATED, f"body ended after {received:,} bytes ({error})"
