"""What the API needs to start, from keyword arguments or STYLEFINDER_* environment variables.

STYLEFINDER_INDEX (the index directory), STYLEFINDER_ADMIN_KEY and STYLEFINDER_READ_KEY (or
STYLEFINDER_ADMIN_KEY_FILE and STYLEFINDER_READ_KEY_FILE, files holding them; a file wins over
the key itself), STYLEFINDER_MAX_UPLOAD_MB (in MB, 10 by default; `max_upload_bytes` given as an
argument wins), STYLEFINDER_MAX_PIXELS and STYLEFINDER_REQUEST_TIMEOUT (seconds), STYLEFINDER_FEED
(a product feed's path or http(s) URL, which POST /v1/feeds/sync re-syncs into the index) and
STYLEFINDER_FEED_FORMAT (auto by default). Empty variables count as unset.

Example:
    >>> ServerSettings.from_env(index_dir="shop-index").max_upload_bytes  # doctest: +SKIP
    10000000
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stylefinder.catalog.feeds.formats import FEED_FORMATS
from stylefinder.catalog.images import DEFAULT_MAX_PIXELS
from stylefinder.errors import IndexStateError

_PREFIX = "STYLEFINDER_"


class ServerSettings(BaseSettings):
    """Everything the API needs to start. Keys come from the environment or from files.

    Example:
        >>> ServerSettings(index_dir="shop-index", admin_key="s3cret").read_key is None
        True
    """

    model_config = SettingsConfigDict(
        env_prefix=_PREFIX, env_ignore_empty=True, populate_by_name=True, extra="forbid"
    )

    index_dir: str = Field("", validation_alias=f"{_PREFIX}INDEX")
    admin_key: str | None = Field(None, repr=False)
    admin_key_file: Path | None = None
    read_key: str | None = Field(None, repr=False)
    read_key_file: Path | None = None
    max_upload_mb: float = 10.0
    max_upload_bytes: int = 10_000_000  # max_upload_mb in bytes unless given
    max_pixels: int = DEFAULT_MAX_PIXELS
    request_timeout: float = 30.0
    feed: str | None = None  # the product feed POST /v1/feeds/sync re-syncs
    feed_format: str = "auto"

    @model_validator(mode="after")
    def _complete(self) -> ServerSettings:
        """An index must be given; keys are read from their files; MB become bytes."""
        if not self.index_dir:
            raise IndexStateError("no index given: set STYLEFINDER_INDEX or pass --index")
        if self.admin_key_file:
            self.admin_key = _read_key(self.admin_key_file)
        if self.read_key_file:
            self.read_key = _read_key(self.read_key_file)
        if "max_upload_bytes" not in self.model_fields_set:
            self.max_upload_bytes = int(self.max_upload_mb * 1e6)
        if self.feed_format not in FEED_FORMATS:
            raise ValueError(
                f"feed_format: {self.feed_format!r} is not one of {', '.join(FEED_FORMATS)}"
            )
        return self

    @classmethod
    def from_env(cls, **overrides) -> ServerSettings:
        """Settings from STYLEFINDER_* variables, `overrides` that are not None winning; a bad
        value raises `ValueError` naming its variable, a missing index `IndexStateError`.

        Example:
            >>> ServerSettings.from_env(index_dir="shop-index", admin_key=None)  # doctest: +SKIP
        """
        try:
            return cls(**{name: value for name, value in overrides.items() if value is not None})
        except ValidationError as exc:
            raise ValueError(_plain(exc)) from None


def _read_key(path: Path) -> str:
    text = Path(path).read_text(encoding="utf-8").strip()
    if not text:
        raise ValueError(f"{path} is empty")
    return text


def _plain(exc: ValidationError) -> str:
    """Pydantic's errors as one line: the variable, then what is wrong with it."""
    parts = []
    for error in exc.errors():
        cause = error.get("ctx", {}).get("error")
        message = str(cause) if cause is not None else error["msg"]
        where = ".".join(map(str, error["loc"]))
        if where and not where.upper().startswith(_PREFIX):
            where = _PREFIX + where.upper()
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
