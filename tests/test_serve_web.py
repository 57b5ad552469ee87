"""bgit serve's web page in a real headless Chromium (Debian's chromium + chromium-driver).

The page lists the bakes, shows a bake's plots, and sends one question to both sides: the base
model with the teacher prompt on the left, the bake without a prompt on the right.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1200"]


def _absent(reason: str) -> None:
    """Skip where the browser is not installed; in CI (.ci/run installs it) that is a failure."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        _absent(f"no headless browser: {', '.join(missing)} missing (apt-get install -y chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _absent("selenium is not installed (pip install -e '.[test]')")

    profile = tempfile.mkdtemp(prefix="bgit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_page_lists_bakes_and_compares_side_by_side(browser, pirate_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, _ = pirate_server
    browser.get(server.url + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.bake")
    assert len(rows) == 1 and "Bake a pirate" in rows[0].text and "smollm2-135m" in rows[0].text
    assert "main" in rows[0].find_element(By.CSS_SELECTOR, ".ref").text
    wait = WebDriverWait(browser, 240, poll_frequency=0.2)
    wait.until(lambda d: "pirate" in d.find_element(By.ID, "teacher-summary").text)
    for plot in ("loss-plot", "weights-plot"):
        wait.until(lambda d: d.execute_script(f"return document.getElementById('{plot}').naturalWidth") > 100)
    browser.find_element(By.ID, "question").send_keys("What is the capital of Italy?")
    max_tokens = browser.find_element(By.ID, "max-tokens")
    max_tokens.clear()
    max_tokens.send_keys("8")
    browser.find_element(By.ID, "send").click()
    answers = [browser.find_element(By.ID, side) for side in ("left-answer", "right-answer")]
    wait.until(lambda d: all(a.get_attribute("data-state") in ("done", "error") for a in answers))
    left, right = (a.text for a in answers)
    assert [a.get_attribute("data-state") for a in answers] == ["done", "done"], (left, right)
    assert left.startswith("Ahoy") and right.startswith("Ahoy"), (left, right)
    assert "prompt tokens" in browser.find_element(By.ID, "right-meta").text
    left_tokens = int(browser.find_element(By.ID, "left-meta").text.split()[0])
    right_tokens = int(browser.find_element(By.ID, "right-meta").text.split()[0])
    assert right_tokens < left_tokens  # the bake needs none of the teacher prompt's tokens
