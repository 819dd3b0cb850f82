"""Many HTTP GETs at once on libcurl's multi interface (pycurl), driven from one thread.

libcurl does the connections, keep-alive, redirects, TLS and the transfer itself in C, with
the interpreter lock released, so a feed's thousands of downloads cost a small share of the
CPU that Python HTTP clients spend (and leave the lock to the embedding they overlap with;
`benchmarks/feed_index.py`). What is ours is the policy: at most `workers` transfers at once
and `per_host` against one host, retries of 429/5xx answers and of connections that fail or
stall before an answer (exponential backoff, or the `Retry-After` the server asked for, up
to `max_retry_after`), a read timeout (no byte for `read_timeout` seconds), a deadline per
URL (retries included) and a cap on the bytes read.

Each request ends in an `Answer`: the last response's status, headers and body, or the
reason no usable response came (`problem`, one of the `FAILURE_*` values).

Example:
    >>> answers = list(run_transfers([Request("https://shop.example/a.jpg")]))  # doctest: +SKIP
    >>> answers[0].status, len(answers[0].body)  # doctest: +SKIP
    (200, 48213)
"""

from __future__ import annotations

import heapq
import io
import os
import ssl
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from stylefinder._version import __version__
from stylefinder.catalog.images import DEFAULT_MAX_PIXELS

FAILURE_TIMEOUT = "timeout"
FAILURE_TOO_LARGE = "too large"
FAILURE_TRUNCATED = "truncated"
FAILURE_TLS = "tls error"
FAILURE_CONNECTION = "connection error"
FAILURE_REDIRECTS = "too many redirects"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Answers whose `Retry-After` is honoured (as urllib3 does); others back off exponentially.
RETRY_AFTER_STATUSES = frozenset({413, 429, 503})
#: How often at most the loop looks for stalled transfers, in seconds.
STALL_CHECK_SECONDS = 0.05


@dataclass(frozen=True)
class DownloadOptions:
    """How images are fetched; the defaults suit a shop's CDN.

    Example:
        >>> DownloadOptions(read_timeout=5).connect_timeout
        5.0
    """

    workers: int = 16  # transfers at once
    per_host: int = 8
    connect_timeout: float = 5.0
    read_timeout: float = 20.0  # seconds without a byte
    deadline: float = 120.0  # seconds for one URL, retries and redirects included
    retries: int = 3
    backoff_factor: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 60.0
    max_redirects: int = 5
    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = DEFAULT_MAX_PIXELS
    user_agent: str = f"stylefinder/{__version__} (product feed sync)"


@dataclass(frozen=True)
class Request:
    """One URL to GET, with extra request headers and its own byte cap (None: the options')."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    max_bytes: int | None = None


@dataclass
class Answer:
    """How a request ended: the last response (`status`, `reason`, lower-cased `headers`,
    `body`), or `problem` and `detail` when no usable response came; `attempts` lists every
    status answered, redirects and retries included."""

    request: Request
    status: int | None = None
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    problem: str | None = None
    detail: str = ""
    attempts: list[int] = field(default_factory=list)
    seconds: float = 0.0


class _Job:
    """A request in flight: its attempts so far and the response being read."""

    def __init__(self, request: Request, options: DownloadOptions, now: float) -> None:
        self.request = request
        self.host = urlsplit(request.url).netloc.lower()
        self.max_bytes = request.max_bytes or options.max_bytes
        self.started = now
        self.deadline = now + options.deadline
        self.status_retries = 0
        self.network_retries = 0
        self.attempts: list[int] = []
        self._reset(now)

    def _reset(self, now: float) -> None:
        self.body = io.BytesIO()
        self.status: int | None = None
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.got_bytes = False
        self.too_large = False
        self.attempt_started = self.last_activity = now

    def on_header(self, line: bytes) -> None:
        self.last_activity = time.monotonic()
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text.startswith("HTTP/"):
            parts = text.split(" ", 2)
            code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            if code >= 200:  # not an interim 1xx
                self.status, self.headers = code, {}
                self.reason = parts[2] if len(parts) > 2 else ""
                self.attempts.append(code)
        elif ":" in text:
            name, value = text.split(":", 1)
            self.headers[name.strip().lower()] = value.strip()

    def on_body(self, chunk: bytes) -> int | None:
        self.last_activity = time.monotonic()
        self.got_bytes = True
        if self.body.tell() + len(chunk) > self.max_bytes:
            self.too_large = True
            return 0  # libcurl stops the transfer (a write error)
        self.body.write(chunk)
        return None


def run_transfers(
    requests: Iterable[Request], options: DownloadOptions | None = None
) -> Iterator[Answer]:
    """GET every request, `options.workers` at a time; yields each `Answer` as it ends (in no
    particular order). Never raises for a network problem.

    Example:
        >>> for answer in run_transfers([Request(url) for url in urls]):  # doctest: +SKIP
        ...     print(answer.request.url, answer.status or answer.problem)
    """
    import pycurl

    options = options or DownloadOptions()
    multi = pycurl.CurlMulti()
    multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, max(1, options.per_host))
    multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, max(1, options.workers))
    idle: list = []
    waiting = _Waiting(_Job(request, options, time.monotonic()) for request in requests)
    delayed: list[tuple[float, int, _Job]] = []  # (when, order, job) of retries
    active: dict[object, _Job] = {}
    per_host: Counter[str] = Counter()
    last_check = time.monotonic()
    try:
        while waiting or delayed or active:
            now = time.monotonic()
            while delayed and delayed[0][0] <= now:
                waiting.append(heapq.heappop(delayed)[2])
            _start_waiting(waiting, active, per_host, idle, multi, options, now)
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            ended: list[tuple[object, int, str]] = []
            while True:
                queued, done, failed = multi.info_read()
                ended += [(handle, 0, "") for handle in done]
                ended += failed
                if not queued:
                    break
            now = time.monotonic()
            if now - last_check >= STALL_CHECK_SECONDS:
                last_check = now
                ended += _stalled(active, options, now)
            for handle, code, message in ended:
                job = active.pop(handle)
                multi.remove_handle(handle)
                idle.append(handle)
                per_host[job.host] -= 1
                answer, again_at = _outcome(job, code, message, options, time.monotonic())
                if answer is not None:
                    yield answer
                else:
                    heapq.heappush(delayed, (again_at, id(job), job))
            if not ended:
                suggested = multi.timeout()  # ms libcurl wants to wait at most, -1: none
                wait = suggested / 1000 if suggested >= 0 else 0.1
                if delayed:
                    wait = min(wait, max(0.0, delayed[0][0] - time.monotonic()))
                if active:
                    multi.select(min(wait, STALL_CHECK_SECONDS))
                elif wait > 0 and not waiting:
                    time.sleep(wait)
    finally:
        for handle in list(active) + idle:
            if handle in active:
                multi.remove_handle(handle)
            handle.close()
        multi.close()


def _start_waiting(waiting, active, per_host, idle, multi, options, now) -> None:
    """Hand libcurl the waiting jobs that fit under `workers` and `per_host`."""
    while len(active) < options.workers:
        job = waiting.pop_ready(per_host, options.per_host)
        if job is None:
            return
        handle = idle.pop() if idle else _new_handle()
        _prepare(handle, job, options, now)
        multi.add_handle(handle)
        active[handle] = job
        per_host[job.host] += 1


class _Waiting:
    """The jobs waiting for a transfer: first come, first served within a host, hosts taken
    in turn. A host at its limit is passed over without looking at its jobs (a feed's
    thousands of images on one CDN would otherwise be walked through on every turn)."""

    def __init__(self, jobs: Iterable[_Job]) -> None:
        self._by_host: dict[str, deque[_Job]] = {}
        self._turns: deque[str] = deque()  # the hosts with jobs waiting, next first
        self._count = 0
        for job in jobs:
            self.append(job)

    def __len__(self) -> int:
        return self._count

    def append(self, job: _Job) -> None:
        jobs = self._by_host.get(job.host)
        if jobs is None:
            jobs = self._by_host[job.host] = deque()
            self._turns.append(job.host)
        jobs.append(job)
        self._count += 1

    def pop_ready(self, busy: Counter[str], limit: int) -> _Job | None:
        """The next job of a host with fewer than `limit` transfers `busy`, or None. A host
        at the limit has `limit` transfers, so at most `workers / limit` are passed over."""
        for _ in range(len(self._turns)):
            host = self._turns[0]
            self._turns.rotate(-1)  # its turn is over: it goes to the back
            if busy[host] >= limit:
                continue
            jobs = self._by_host[host]
            job = jobs.popleft()
            if not jobs:
                del self._by_host[host]
                self._turns.pop()
            self._count -= 1
            return job
        return None


def _new_handle():
    import pycurl

    return pycurl.Curl()


def _prepare(handle, job: _Job, options: DownloadOptions, now: float) -> None:
    import pycurl

    handle.reset()
    job._reset(now)
    headers = {"User-Agent": options.user_agent, "Accept": "image/*,*/*;q=0.5"}
    headers.update(job.request.headers)
    handle.setopt(pycurl.URL, job.request.url)
    handle.setopt(pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in headers.items()])
    handle.setopt(pycurl.NOSIGNAL, 1)
    handle.setopt(pycurl.FOLLOWLOCATION, 1)
    handle.setopt(pycurl.MAXREDIRS, max(0, options.max_redirects))
    handle.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
    handle.setopt(pycurl.REDIR_PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
    handle.setopt(pycurl.ACCEPT_ENCODING, "")  # gzip, deflate, ...: decoded by libcurl
    handle.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(options.connect_timeout * 1000)))
    handle.setopt(pycurl.TIMEOUT_MS, max(1, int((job.deadline - now) * 1000)))
    handle.setopt(pycurl.MAXFILESIZE_LARGE, job.max_bytes)
    handle.setopt(pycurl.HEADERFUNCTION, job.on_header)
    handle.setopt(pycurl.WRITEFUNCTION, job.on_body)
    cafile, capath = _ca_locations()
    if cafile:
        handle.setopt(pycurl.CAINFO, cafile)
    if capath:
        handle.setopt(pycurl.CAPATH, capath)


_CA: tuple[str | None, str | None] | None = None


def _ca_locations() -> tuple[str | None, str | None]:
    """The system's CA certificates (as Python's ssl module finds them), for HTTPS."""
    global _CA
    if _CA is None:
        paths = ssl.get_default_verify_paths()
        cafile = paths.cafile if paths.cafile and os.path.isfile(paths.cafile) else None
        capath = paths.capath if paths.capath and os.path.isdir(paths.capath) else None
        _CA = (cafile, capath)
    return _CA


def _stalled(active: dict, options: DownloadOptions, now: float) -> list[tuple[object, int, str]]:
    """Transfers that got no byte for `read_timeout` seconds since they connected or last
    received (libcurl's own low-speed limit counts whole seconds only)."""
    import pycurl

    stalled = []
    for handle, job in active.items():
        if job.got_bytes or job.status is not None:
            since = job.last_activity
        else:
            sent = handle.getinfo(pycurl.PRETRANSFER_TIME)  # connected (or reused), asking
            if sent <= 0:
                continue  # still connecting: CONNECTTIMEOUT_MS rules
            since = job.attempt_started + sent
        if now - since > options.read_timeout:
            stalled.append((handle, pycurl.E_OPERATION_TIMEDOUT, "read timed out"))
    return stalled


_TLS_ERRORS = frozenset({35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91, 98})
_CONNECT_ERRORS = frozenset({5, 6, 7})  # proxy or host not resolved, could not connect
_EMPTY_ERRORS = frozenset({52, 55, 56})  # nothing back, send or receive failed
_RETRIED_ERRORS = _CONNECT_ERRORS | _EMPTY_ERRORS | {28}  # 28: timed out


def _outcome(
    job: _Job, code: int, message: str, options: DownloadOptions, now: float
) -> tuple[Answer | None, float]:
    """The job's `Answer`, or (None, when) to try it again at `when`."""
    answer = Answer(
        job.request,
        status=job.status,
        reason=job.reason,
        headers=job.headers,
        attempts=list(job.attempts),
        seconds=now - job.started,
    )
    if code == 0 and job.status is not None:
        if job.status in RETRY_STATUSES and job.status_retries < options.retries:
            when = now + _status_delay(job, options)
            if when < job.deadline:
                job.status_retries += 1
                return None, when
        answer.body = job.body.getvalue()
        return answer, now
    answer.problem, answer.detail = _problem(job, code, message, options, now)
    if (
        job.status is None  # no answer yet: the connection failed, stalled or came back empty
        and code in _RETRIED_ERRORS
        and not job.too_large
        and job.network_retries < options.retries
    ):
        when = now + _backoff(job.network_retries + 1, options)
        if when < job.deadline:
            job.network_retries += 1
            return None, when
    return answer, now


def _problem(job: _Job, code: int, message: str, options, now: float) -> tuple[str, str]:
    """(failure, detail) of a transfer libcurl ended with error `code`."""
    received = job.body.tell()
    if job.too_large or code == 63:
        return FAILURE_TOO_LARGE, f"over {job.max_bytes:,} bytes"
    if code == 47:
        return FAILURE_REDIRECTS, f"more than {options.max_redirects} redirects ({message})"
    if code == 28:
        if now >= job.deadline - 0.01:
            return FAILURE_TIMEOUT, f"still downloading after {options.deadline:g} s"
        if job.got_bytes:
            return FAILURE_TIMEOUT, f"read timed out after {received:,} bytes"
        return FAILURE_TIMEOUT, message or "timed out"
    if code == 18 or (code in _EMPTY_ERRORS and job.got_bytes):
        return FAILURE_TRUNCATED, f"body ended after {received:,} bytes ({message})"
    if code in _TLS_ERRORS:
        return FAILURE_TLS, message
    if code in (1, 3):
        return FAILURE_CONNECTION, f"bad address ({message})"
    return FAILURE_CONNECTION, message or f"transfer failed (libcurl error {code})"


def _status_delay(job: _Job, options: DownloadOptions) -> float:
    """Seconds before retrying an answer that asked for it: its `Retry-After` (capped), else
    exponential backoff."""
    if job.status in RETRY_AFTER_STATUSES and "retry-after" in job.headers:
        asked = _retry_after(job.headers["retry-after"])
        if asked is not None:
            return min(asked, options.max_retry_after)
    return _backoff(job.status_retries + 1, options)


def _backoff(retry: int, options: DownloadOptions) -> float:
    """urllib3's schedule: the first retry at once, then `backoff_factor` * 2 ** (n - 1)."""
    if retry <= 1:
        return 0.0
    return min(options.backoff_max, options.backoff_factor * 2 ** (retry - 1))


def _retry_after(value: str) -> float | None:
    """Seconds a `Retry-After` header asks for (a number or an HTTP date), None if unreadable.

    Example:
        >>> _retry_after("3"), _retry_after("soon")
        (3.0, None)
    """
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())
