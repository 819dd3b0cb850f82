"""Drive the running web app in headless Chromium (Selenium): for end-to-end tests and timing.

Uses Debian's `chromium` and `chromium-driver`; nothing is downloaded.

Example:
    >>> with running_app("shop-index", port=8765) as url, chromium() as browser:  # doctest: +SKIP
    ...     seconds = upload_and_wait(browser, url, "photo.jpg", results=5)
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from stylefinder.app import app_command

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
RESULT_IMAGES = ".st-key-results img"


def find_chromium() -> tuple[str, str] | None:
    """Paths of (chromium, chromedriver), or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_app(index_dir: str | Path, *, port: int, timeout: float = 120) -> Iterator[str]:
    """Start `stylefinder app` on 127.0.0.1:`port`; yields its URL once it answers."""
    command, env = app_command(index_dir, port=port)
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, url, timeout=timeout)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_ready(process: subprocess.Popen, url: str, *, timeout: float = 120) -> None:
    """Poll the Streamlit app at `url` (started as `process`) until its health check answers;
    RuntimeError when the process exits first, TimeoutError after `timeout` seconds.

    Example:
        >>> wait_until_ready(process, "http://127.0.0.1:8765", timeout=60)  # doctest: +SKIP
    """
    deadline = time.monotonic() + timeout
    while not answers(f"{url}/_stcore/health"):
        if process.poll() is not None:
            output = process.stderr.read()[-2000:] if process.stderr else ""
            raise RuntimeError(f"the app exited with status {process.returncode}: {output}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the app did not answer on {url} within {timeout:.0f} s")
        time.sleep(0.1)


def answers(url: str) -> bool:
    """True when a GET of `url` answers 200 within 2 seconds."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def chromium(width: int = 1440, height: int = 1000) -> Iterator[object]:
    """A headless Chromium WebDriver (Debian's browser and driver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = find_chromium()
    if paths is None:
        raise RuntimeError("chromium and chromedriver are needed: apt-get install chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(executable_path=paths[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_app(driver, url: str, timeout: float = 60) -> None:
    """Load the app and wait until its upload box is there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, timeout).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "input[type='file']"))
    )


def upload_and_wait(driver, image: str | Path, *, results: int = 5, timeout: float = 60) -> float:
    """Upload `image` in the open app; returns seconds until `results` result images show."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def source(element) -> tuple[str, str]:  # Streamlit may reuse an <img> for a new result
        return element.id, element.get_attribute("src") or ""

    before = {source(e) for e in driver.find_elements(By.CSS_SELECTOR, RESULT_IMAGES)}
    started = time.perf_counter()
    driver.find_element(By.CSS_SELECTOR, "input[type='file']").send_keys(str(Path(image).resolve()))

    def shown(drv) -> bool:
        images = drv.find_elements(By.CSS_SELECTOR, RESULT_IMAGES)
        fresh = [e for e in images if source(e) not in before]
        loaded = [e for e in fresh if drv.execute_script("return arguments[0].complete", e)]
        return len(loaded) >= results

    WebDriverWait(driver, timeout, poll_frequency=0.02).until(shown)
    return time.perf_counter() - started
