"""What the API needs to start, read from STYLEFINDER_* environment variables.

Example:
    >>> ServerSettings.from_env(index_dir="shop-index").max_upload_bytes  # doctest: +SKIP
    10000000
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from stylefinder.catalog.images import DEFAULT_MAX_PIXELS
from stylefinder.errors import IndexStateError


@dataclass
class ServerSettings:
    """Everything the API needs to start. Keys come from the environment or from files."""

    index_dir: str
    admin_key: str | None = None
    read_key: str | None = None
    max_upload_bytes: int = 10_000_000
    max_pixels: int = DEFAULT_MAX_PIXELS
    request_timeout: float = 30.0

    @classmethod
    def from_env(cls, **overrides) -> ServerSettings:
        """Settings from STYLEFINDER_* variables; `*_KEY_FILE` variables name files holding keys.

        STYLEFINDER_INDEX, STYLEFINDER_ADMIN_KEY(_FILE), STYLEFINDER_READ_KEY(_FILE),
        STYLEFINDER_MAX_UPLOAD_MB, STYLEFINDER_MAX_PIXELS, STYLEFINDER_REQUEST_TIMEOUT.
        """
        env = os.environ
        values = {
            "index_dir": env.get("STYLEFINDER_INDEX", ""),
            "admin_key": _key(env, "STYLEFINDER_ADMIN_KEY"),
            "read_key": _key(env, "STYLEFINDER_READ_KEY"),
            "max_upload_bytes": int(float(env.get("STYLEFINDER_MAX_UPLOAD_MB", "10")) * 1e6),
            "max_pixels": int(env.get("STYLEFINDER_MAX_PIXELS", DEFAULT_MAX_PIXELS)),
            "request_timeout": float(env.get("STYLEFINDER_REQUEST_TIMEOUT", "30")),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values["index_dir"]:
            raise IndexStateError("no index given: set STYLEFINDER_INDEX or pass --index")
        return cls(**values)


def _key(env: os._Environ, name: str) -> str | None:
    if env.get(f"{name}_FILE"):
        text = Path(env[f"{name}_FILE"]).read_text(encoding="utf-8").strip()
        if not text:
            raise ValueError(f"{env[f'{name}_FILE']} is empty")
        return text
    return env.get(name) or None
