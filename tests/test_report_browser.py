"""The report in a real browser: headless Chromium loads it from disk with no console errors,
every image decodes to a non-empty picture, and the per-label table sorts on click.

Chromium and its driver come from Debian (`chromium`, `chromium-driver`). When they are missing the
set-up installs them with apt-get if it can (root, apt-get present); otherwise the test is skipped
and says why (`pytest -ra` prints the reason).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from mlbert.report import make_report
from test_report import EVIL, _sample

APT_TIMEOUT_S = 900


def _browser_paths() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def _install_chromium() -> str | None:
    """apt-get install chromium chromium-driver; None on success, else why not."""
    if not shutil.which("apt-get"):
        return "no apt-get on this machine"
    if os.geteuid() != 0:
        return "not root, so apt-get cannot install packages"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(cmd)}` took over {APT_TIMEOUT_S} s"
        if done.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {(done.stderr or done.stdout).strip()[-300:]}"
    return None


@pytest.fixture(scope="module")
def browser():
    paths = _browser_paths()
    if paths is None:
        why = _install_chromium()
        paths = _browser_paths()
        if paths is None:
            pytest.skip(
                f"Chromium is not installed and could not be installed ({why or 'not found after install'}); "
                "install the Debian packages chromium and chromium-driver to run the browser test"
            )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed: pip install -e '.[dev]'")
    chromium, driver_path = paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,2000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(make_report(_sample(n=300, n_labels=12)), encoding="utf-8")
    return path.as_uri()


def test_page_loads_offline_with_no_console_errors(browser, page_url):
    browser.get(page_url)
    assert browser.title.startswith("mlbert report")
    problems = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert problems == []  # a blocked script or style (wrong CSP hash) or a failed image shows up here
    # The script ran: it made the headers keyboard-focusable.
    assert browser.execute_script("return document.querySelector('#per-label th').tabIndex") == 0


def test_every_image_decodes_to_a_non_empty_picture(browser, page_url):
    browser.get(page_url)
    sizes = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(sizes) == 7
    for complete, width, height in sizes:
        assert complete and width > 100 and height > 100


def test_user_text_shows_as_text_and_never_runs(browser, page_url):
    browser.get(page_url)
    assert browser.execute_script("return document.scripts.length") == 1
    assert EVIL in browser.execute_script("return document.getElementById('mistakes').textContent")
    assert browser.execute_script("return document.querySelectorAll('img[onerror]').length") == 0


def test_per_label_table_sorts_on_click(browser, page_url):
    from selenium.webdriver.common.by import By

    browser.get(page_url)
    header = browser.find_elements(By.CSS_SELECTOR, "#per-label thead th")[5]
    assert header.text.startswith("F1")

    def column():
        return browser.execute_script(
            "return Array.from(document.querySelectorAll('#per-label tbody tr'))"
            ".map(r => parseFloat(r.cells[5].dataset.value))"
        )

    header.click()
    ascending = column()
    assert ascending == sorted(ascending) and len(ascending) == 12
    header.click()
    assert column() == sorted(ascending, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
