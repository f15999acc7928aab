"""The review page in a real headless Chromium: sign in, open a case, claim and decide with the
keyboard, and see the queue change. Fails (never skips) under CI when the browser is missing."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from sqlmodel import Session, select

from keye.db import Analysis, Review

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1000"]


def _missing(why: str) -> None:
    # `make test` installs Chromium (scripts/system-deps.sh): a browser that cannot start is a failure.
    pytest.fail(f"the browser test cannot run: {why} (apt-get install chromium chromium-driver; "
                "pip install selenium)", pytrace=False)


@pytest.fixture
def browser(tmp_path: Path):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        _missing(str(e))
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        _missing("chromium or chromedriver is not on PATH")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


@pytest.fixture
def live_url(app) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_sign_in_claim_decide_and_queue_changes(browser, live_url: str, keys, seed, session: Session) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    severe = seed("severe-clip", severity=3, categories=("violence",), duration_s=3.0)
    seed("mild-clip", severity=1, categories=("scam_spam",))

    browser.get(live_url + "/review")
    assert "/review/login" in browser.current_url  # no session: the login form
    browser.find_element(By.ID, "key").send_keys(keys["product"] + Keys.ENTER)
    assert "not a moderator key" in browser.find_element(By.ID, "flash").text
    browser.find_element(By.ID, "key").send_keys(keys["moderator"] + Keys.ENTER)

    rows = browser.find_elements(By.CSS_SELECTOR, "#queue tbody tr")
    assert [r.get_attribute("data-analysis-id") for r in rows] == [severe.analysis_id, rows[1].get_attribute("data-analysis-id")]
    assert "severe-clip" in rows[0].text and "mild-clip" in rows[1].text

    # Keyboard only: j focuses the first case, Enter opens it, c claims, n focuses the note, y confirms.
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("j")
    assert browser.switch_to.active_element.text == "severe-clip"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    assert browser.find_element(By.ID, "reasoning").text == "reasoning for severe-clip"
    img = browser.find_element(By.CSS_SELECTOR, ".thumbs img")
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", img))
    browser.find_element(By.TAG_NAME, "body").send_keys("c")
    assert browser.find_element(By.ID, "confirm").is_displayed()
    browser.find_element(By.TAG_NAME, "body").send_keys("n")
    browser.switch_to.active_element.send_keys("clearly violent")
    browser.find_element(By.TAG_NAME, "body").click()  # leave the note field so single keys act again
    browser.find_element(By.TAG_NAME, "body").send_keys("y")

    assert "confirm recorded for severe-clip" in browser.find_element(By.ID, "flash").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#queue tbody tr")
    assert ["mild-clip" in r.text for r in rows] == [True]

    session.expire_all()
    (review,) = session.exec(select(Review)).all()
    assert (review.analysis_id, review.decision, review.note) == (severe.analysis_id, "confirm", "clearly violent")
    assert session.get(Analysis, severe.analysis_id).moderation_status == "flagged"
