"""The API's settings: STYLEFINDER_* variables, keys read from files, upload limit in MB."""

from __future__ import annotations

import pytest

from stylefinder.errors import IndexStateError
from stylefinder.serve.settings import ServerSettings

VARIABLES = (
    "INDEX",
    "ADMIN_KEY",
    "ADMIN_KEY_FILE",
    "READ_KEY",
    "READ_KEY_FILE",
    "MAX_UPLOAD_MB",
    "MAX_UPLOAD_BYTES",
    "MAX_PIXELS",
    "REQUEST_TIMEOUT",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(f"STYLEFINDER_{name}", raising=False)


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    (tmp_path / "admin.key").write_text("  from-a-file\n", encoding="utf-8")
    monkeypatch.setenv("STYLEFINDER_INDEX", "/srv/index")
    monkeypatch.setenv("STYLEFINDER_ADMIN_KEY", "ignored: the file wins")
    monkeypatch.setenv("STYLEFINDER_ADMIN_KEY_FILE", str(tmp_path / "admin.key"))
    monkeypatch.setenv("STYLEFINDER_READ_KEY", "reader")
    monkeypatch.setenv("STYLEFINDER_MAX_UPLOAD_MB", "2.5")
    monkeypatch.setenv("STYLEFINDER_MAX_PIXELS", "1000000")
    monkeypatch.setenv("STYLEFINDER_REQUEST_TIMEOUT", "4")
    settings = ServerSettings.from_env()
    assert settings.index_dir == "/srv/index"
    assert (settings.admin_key, settings.read_key) == ("from-a-file", "reader")
    assert settings.max_upload_bytes == 2_500_000 and settings.max_pixels == 1_000_000
    assert settings.request_timeout == 4.0
    assert "from-a-file" not in repr(settings) and "reader" not in repr(settings)
    assert ServerSettings.from_env(index_dir="/other", read_key=None).index_dir == "/other"


def test_defaults_and_empty_variables(monkeypatch):
    monkeypatch.setenv("STYLEFINDER_INDEX", "/srv/index")
    monkeypatch.setenv("STYLEFINDER_ADMIN_KEY", "")
    monkeypatch.setenv("STYLEFINDER_MAX_UPLOAD_MB", "")
    settings = ServerSettings.from_env()
    assert settings.admin_key is None and settings.read_key is None
    assert settings.max_upload_bytes == 10_000_000 and settings.request_timeout == 30.0
    given = ServerSettings(index_dir="/i", max_upload_bytes=50_000)
    assert given.max_upload_bytes == 50_000


def test_no_index_is_the_same_clear_error(monkeypatch):
    with pytest.raises(IndexStateError, match="no index given: set STYLEFINDER_INDEX"):
        ServerSettings.from_env()
    monkeypatch.setenv("STYLEFINDER_INDEX", "")
    with pytest.raises(IndexStateError, match="no index given"):
        ServerSettings.from_env()


def test_bad_values_name_their_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("STYLEFINDER_INDEX", "/srv/index")
    (tmp_path / "empty.key").write_text("\n", encoding="utf-8")
    monkeypatch.setenv("STYLEFINDER_READ_KEY_FILE", str(tmp_path / "empty.key"))
    with pytest.raises(ValueError, match=r"^\S*empty.key is empty$"):
        ServerSettings.from_env()
    monkeypatch.setenv("STYLEFINDER_READ_KEY_FILE", str(tmp_path / "missing.key"))
    with pytest.raises(FileNotFoundError):
        ServerSettings.from_env()
    monkeypatch.delenv("STYLEFINDER_READ_KEY_FILE")
    monkeypatch.setenv("STYLEFINDER_MAX_UPLOAD_MB", "lots")
    with pytest.raises(ValueError, match=r"STYLEFINDER_MAX_UPLOAD_MB: .*valid number"):
        ServerSettings.from_env()
