"""End to end: `stylefinder app` in a real headless Chromium, uploading a real image file, a
file over the upload limit, and words typed in the search box."""

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


def test_upload_over_the_limit_gets_the_apps_message(app_index, tmp_path):
    """Streamlit's browser code refuses files over its own cap, which is above the app's limit:
    a file over the limit reaches the app, whose message names its size and the limit."""
    big = tmp_path / "photo.jpg"
    big.write_bytes(b"\xff\xd8" + bytes(12_300_000 - 2))  # 12.3 MB, over the 10 MB limit
    with running_app(app_index, port=free_port()) as url, chromium() as browser:
        open_app(browser, url)
        browser.find_element(By.CSS_SELECTOR, "input[type='file']").send_keys(str(big))

        def page_text(driver) -> str:
            return driver.find_element(By.TAG_NAME, "body").text

        WebDriverWait(browser, 60).until(lambda driver: "the limit is" in page_text(driver))
        text = page_text(browser)
    assert "photo.jpg is 12.3 MB; the limit is 10 MB." in text


def test_words_typed_in_the_search_box_show_matching_items(app_index):
    with running_app(app_index, port=free_port()) as url, chromium() as browser:
        open_app(browser, url)
        box = WebDriverWait(browser, 60).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, ".st-key-words input"))
        )
        box.send_keys("ankle boots\n")

        def page_text(driver) -> str:
            return driver.find_element(By.TAG_NAME, "body").text

        WebDriverWait(browser, 60).until(lambda driver: "best matching" in page_text(driver))
        text = page_text(browser)
    assert "5 best matching “ankle boots”" in text
    assert text.count("Ankle boot") >= 5
