"""Images on object storage (`s3://`, `gs://`, `abfs://`, `hdfs://`, and `file://`), read
through pyarrow's filesystems, as Ray Data reads them.

A catalog list may name such locations (`catalog.scan.scan_list`). The driver reads only their
metadata (size, modification time), so that a run knows what changed without downloading
anything; whoever decodes an image (a Ray worker, or local indexing) reads its bytes
(`catalog.images.load_image` takes these locations as it takes paths). Credentials come from
the environment, as pyarrow takes them (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION, or an instance role). Only `file://` is tested here (no object store can
be reached from this machine); it goes through the same pyarrow code.

Example:
    >>> is_remote("s3://shop-photos/dresses/red.jpg"), is_remote("photos/red.jpg")
    (True, False)
"""

from __future__ import annotations

import hashlib

#: Locations read through pyarrow's filesystems.
REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "abfs://", "abfss://", "hdfs://", "file://")
PYARROW_EXTRA = "pip install pyarrow (it comes with 'stylefinder[ray]')"


def is_remote(location: object) -> bool:
    """Whether `location` is a URI that pyarrow reads (not a local path)."""
    return isinstance(location, str) and location.lower().startswith(REMOTE_SCHEMES)


def remote_info(uri: str) -> tuple[int, int] | None:
    """(size in bytes, modification time in ns) of the file at `uri`; None when there is no
    file there (missing, or a folder). Raises OSError when the store cannot be reached.

    Example:
        >>> remote_info("file:///etc/hostname")  # doctest: +SKIP
        (13, 1764758400000000000)
    """
    filesystem, path = _filesystem(uri)
    from pyarrow import fs

    info = filesystem.get_file_info(path)
    if info.type != fs.FileType.File:
        return None
    mtime = info.mtime_ns if info.mtime_ns is not None else 0
    return int(info.size or 0), int(mtime)


def read_remote(uri: str) -> bytes:
    """The bytes of the file at `uri` (OSError when it cannot be read)."""
    filesystem, path = _filesystem(uri)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def remote_fingerprint(uri: str, size: int, mtime_ns: int) -> str:
    """A stand-in for the content hash of a remote file, from what its store says of it (its
    location, size and modification time): a run never downloads a file just to learn that it
    did not change. Two locations with the same bytes are two items.

    Example:
        >>> remote_fingerprint("s3://b/x.jpg", 10, 1) == remote_fingerprint("s3://b/x.jpg", 10, 1)
        True
    """
    return hashlib.sha256(f"remote\0{uri}\0{size}\0{mtime_ns}".encode()).hexdigest()


def _filesystem(uri: str):
    try:
        from pyarrow import fs
    except ImportError:
        raise OSError(f"reading {uri.split('://')[0]}:// locations needs {PYARROW_EXTRA}") from None
    try:
        return fs.FileSystem.from_uri(uri)
    except (ValueError, TypeError) as error:  # an unknown scheme, a malformed URI
        raise OSError(f"{uri}: {error}") from None
