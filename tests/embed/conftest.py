"""Fixtures of the embedder tests: small image files for the contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import pictures as write_pictures


@pytest.fixture(scope="session")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four small, clearly different images (PNG and JPEG files)."""
    return write_pictures(tmp_path_factory.mktemp("pictures"))
