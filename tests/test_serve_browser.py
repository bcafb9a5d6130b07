"""The web page in a real browser: paste a Persian article, see its topic bars and summary.

Needs the serve and browser extras and Debian's Chromium (``make browser-deps``); skipped otherwise.
The screenshot is saved in the test's tmp folder and, when ``KHABAR_TEST_ARTIFACTS`` names a
folder, copied there as ``serve-page.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium: pip install 'khabar[browser]'")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER), reason="Chromium and chromedriver are absent (Debian: make browser-deps)"
    ),
]

TITLE = "پیروزی تیم ملی فوتبال"
ARTICLE = (
    "تیم ملی فوتبال ایران شامگاه پنجشنبه در ورزشگاه آزادی تهران با دو گل برابر حریف خود به پیروزی رسید "
    "و یک گام به جام جهانی نزدیک‌تر شد. سرمربی تیم پس از بازی گفت بازیکنان با تمام توان بازی کردند و "
    "هواداران نقش مهمی در این برد داشتند."
)
# Each flag keeps the browser from reaching out or depending on what this machine lacks.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=412,915",  # a phone's width
]


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def test_the_page_shows_topic_bars_and_summary_of_a_pasted_article(
    browser, fitted_classifier_dir, tiny_summarizer_dir, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait
    from serve_process import ServerProcess

    with ServerProcess(classifier=fitted_classifier_dir, summarizer=tiny_summarizer_dir) as server:
        browser.get(server.url + "/")
        root = browser.find_element(By.TAG_NAME, "html")
        assert (root.get_attribute("lang"), root.get_attribute("dir")) == ("fa", "rtl")
        browser.find_element(By.ID, "title").send_keys(TITLE)
        browser.find_element(By.ID, "article").send_keys(ARTICLE)
        browser.find_element(By.ID, "submit").click()
        wait = WebDriverWait(browser, 60)
        wait.until(shown.visibility_of_element_located((By.ID, "topic-box")))
        wait.until(shown.visibility_of_element_located((By.ID, "summary-box")))
        topic = browser.find_element(By.ID, "topic").text
        bars = browser.find_elements(By.CSS_SELECTOR, "#bars .row")
        summary = browser.find_element(By.ID, "summary").text
        fits = browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        # The whole page in one picture: a window as tall as the page (Chrome shoots the window only).
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(412, height + 200)
        screenshot = tmp_path / "serve-page.png"
        browser.save_screenshot(str(screenshot))
    artifacts = os.environ.get("KHABAR_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(artifacts) / "serve-page.png")

    assert not browser.find_element(By.ID, "error").is_displayed()
    assert topic.strip()
    labels = [bar.get_attribute("data-label") for bar in bars]
    assert len(labels) == len(set(labels)) > 1  # a bar per label
    assert summary.strip()
    assert fits  # laid out for a phone: nothing wider than the window
    assert screenshot.stat().st_size > 10_000
