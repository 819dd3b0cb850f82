"""End to end: `stylefinder app` in a real headless Chromium, uploading a real image file."""

from __future__ import annotations

import pytest

pytest.importorskip("selenium")
pytest.importorskip("streamlit")
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from stylefinder.app.browser import (
    chromium,
    find_chromium,
    free_port,
    open_app,
    running_app,
    upload_and_wait,
)

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="Debian's chromium and chromium-driver are not installed (make setup installs them)",
)


def test_upload_shows_five_results(app_index, demo, tmp_path):
    query, _ = next((p, c) for p, c in demo.queries if c == "Sneaker")
    with running_app(app_index, port=free_port()) as url, chromium() as browser:
        open_app(browser, url)
        seconds = upload_and_wait(browser, query, results=5)
        WebDriverWait(browser, 120).until(  # the category and colours come after the results
            ec.presence_of_element_located((By.CSS_SELECTOR, ".st-key-recognition .colour-chip"))
        )
        browser.set_window_size(1440, 1500)  # tall enough for the "For you" row
        screenshot = tmp_path / "app-results.png"
        browser.save_screenshot(str(screenshot))
        page = browser.page_source
    assert seconds < 60
    assert screenshot.stat().st_size > 10_000
    assert "5 most similar" in page and "Sneaker" in page
    assert "For you" in page and "Same category only" in page
