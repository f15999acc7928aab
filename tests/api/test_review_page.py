"""The review page in a real headless Chromium: sign in, open a case, claim and decide with the
keyboard, and see the queue change; the video's context, the queue's frames, the player, releasing
a claim, a note kept across an expired session, error pages. Fails (never skips) when the browser
is missing."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from sqlmodel import Session, select

from api.tables import CaseClaim, ReviewSession
from stores.db import Analysis, Review, Video

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
]


def _missing(why: str) -> None:
    # `make test` installs Chromium (scripts/system-deps.sh): a browser that cannot start is a failure.
    pytest.fail(
        f"the browser test cannot run: {why} (apt-get install chromium chromium-driver; pip install selenium)",
        pytrace=False,
    )


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
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to see CSP refusals
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
    assert [r.get_attribute("data-analysis-id") for r in rows] == [
        severe.analysis_id,
        rows[1].get_attribute("data-analysis-id"),
    ]
    assert "severe-clip" in rows[0].text and "mild-clip" in rows[1].text

    # Keyboard only: j focuses the first case, Enter opens it, c claims, n focuses the note, y confirms.
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("j")
    assert browser.switch_to.active_element.text == "severe-clip"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    assert browser.find_element(By.ID, "reasoning").text == "reasoning for severe-clip"
    img = browser.find_element(By.CSS_SELECTOR, ".thumbs img")
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
    )
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


def _sign_in(browser, live_url: str, key: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(live_url + "/review")
    browser.find_element(By.ID, "key").send_keys(key + Keys.ENTER)
    browser.find_element(By.ID, "nav-queue")


def _with_context(session: Session, record, **fields) -> None:
    video = session.get(Video, record.video_id)
    for name, value in fields.items():
        setattr(video, name, value)
    session.add(video)
    session.commit()


def _loaded(browser, img) -> bool:
    return browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)


def test_queue_strip_case_context_and_the_player_seeking_to_evidence(
    browser, live_url: str, keys, seed, session: Session, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    case = seed("context-clip", severity=3, categories=("violence", "hate"), duration_s=5.0)
    _with_context(
        session,
        case,
        title="Backyard sparring",
        description="Two friends practise kicks.",
        hashtags=["#martialarts", "training"],
    )
    _sign_in(browser, live_url, keys["moderator"])

    row = browser.find_element(By.CSS_SELECTOR, f'#queue tr[data-analysis-id="{case.analysis_id}"]')
    assert "Backyard sparring" in row.text and "by creator-1" in row.text
    strip = row.find_elements(By.CSS_SELECTOR, ".strip img")
    assert [i.get_attribute("alt") for i in strip] == ["frame at 0.5 s", "frame at 1.5 s"]
    WebDriverWait(browser, 30).until(lambda d: all(_loaded(d, i) for i in strip))
    assert browser.save_screenshot(str(tmp_path / "queue.png"))

    row.find_element(By.CSS_SELECTOR, "a.case-link").click()
    context = browser.find_element(By.ID, "context").text
    for shown in ("Backyard sparring", "Two friends practise kicks.", "#martialarts", "#training", "creator-1"):
        assert shown in context or shown in browser.find_element(By.TAG_NAME, "h1").text, shown
    player = browser.find_element(By.ID, "player")
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return arguments[0].readyState >= 1", player))

    def playhead() -> float:
        return browser.execute_script("return arguments[0].currentTime", player)

    evidence = {b.text.rsplit(": ", 1)[1]: b for b in browser.find_elements(By.CSS_SELECTOR, "button.evidence")}
    hate, violence = evidence["hate visible"], evidence["violence visible"]  # 1.5-2.5 s and 0.5-1.5 s
    hate.click()
    assert 1.5 <= playhead() < 1.8  # seeked at once, not played through
    browser.find_element(By.TAG_NAME, "body").send_keys(violence.get_attribute("data-key"))
    assert 0.5 <= playhead() < 0.8 and "playing" in violence.get_attribute("class")
    # It plays that range and stops at its end.
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return arguments[0].paused", player))
    assert 1.45 <= playhead() <= 1.8
    assert browser.execute_script("return arguments[0].error", player) is None

    for img in browser.find_elements(By.CSS_SELECTOR, ".thumbs img"):
        WebDriverWait(browser, 30).until(lambda d, i=img: _loaded(d, i))
    shot = tmp_path / "case-page.png"
    browser.set_window_size(1400, 1100)
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The page works under its CSP: no inline script or style was refused.
    refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused == []


def test_release_the_claim_from_the_page(browser, live_url: str, keys, seed, session: Session) -> None:
    from selenium.webdriver.common.by import By

    case = seed("release-clip", severity=2, categories=("violence",))
    _sign_in(browser, live_url, keys["moderator"])
    browser.get(f"{live_url}/review/cases/{case.analysis_id}")
    browser.find_element(By.TAG_NAME, "body").send_keys("c")
    assert browser.find_element(By.ID, "release").is_displayed()
    session.expire_all()
    assert session.get(CaseClaim, case.analysis_id).moderator == "moderator-1"
    browser.find_element(By.TAG_NAME, "body").send_keys("u")
    assert f"released the claim on case {case.analysis_id}" in browser.find_element(By.ID, "flash").text
    session.expire_all()
    assert session.get(CaseClaim, case.analysis_id) is None
    row = browser.find_element(By.CSS_SELECTOR, f'#queue tr[data-analysis-id="{case.analysis_id}"]')
    assert "moderator-1" not in row.text


def test_an_expired_session_keeps_the_typed_note(browser, live_url: str, keys, seed, session: Session) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    case = seed("expiry-clip", severity=2, categories=("violence",))
    _sign_in(browser, live_url, keys["moderator"])
    browser.get(f"{live_url}/review/cases/{case.analysis_id}")
    browser.find_element(By.TAG_NAME, "body").send_keys("c")
    browser.find_element(By.ID, "note")  # the claimed page is there
    browser.find_element(By.TAG_NAME, "body").send_keys("n")
    browser.switch_to.active_element.send_keys("a toy sword, not a weapon" + Keys.ESCAPE)

    for row in session.exec(select(ReviewSession)):  # the 12 hours are up while the moderator types
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(row)
    session.commit()
    browser.find_element(By.TAG_NAME, "body").send_keys("x")

    WebDriverWait(browser, 10).until(lambda d: "/review/login" in d.current_url)
    assert "Your session has ended" in browser.find_element(By.ID, "flash").text
    assert "problem" not in browser.page_source
    browser.find_element(By.ID, "key").send_keys(keys["moderator"] + Keys.ENTER)
    WebDriverWait(browser, 10).until(lambda d: d.current_url == f"{live_url}/review/cases/{case.analysis_id}")
    assert browser.find_element(By.ID, "note").get_attribute("value") == "a toy sword, not a weapon"
    assert browser.find_element(By.ID, "note-kept").is_displayed()
    browser.find_element(By.TAG_NAME, "body").send_keys("x")

    assert "clear recorded for expiry-clip" in browser.find_element(By.ID, "flash").text
    session.expire_all()
    (review,) = session.exec(select(Review)).all()
    assert (review.decision, review.note) == ("clear", "a toy sword, not a weapon")
    assert browser.execute_script(f"return sessionStorage.getItem('keye-note:{case.analysis_id}')") is None


def test_an_invalid_filter_shows_a_page(browser, live_url: str, keys) -> None:
    from selenium.webdriver.common.by import By

    _sign_in(browser, live_url, keys["moderator"])
    browser.get(live_url + "/review?state=closed&max_age_h=-3")
    assert browser.find_element(By.ID, "error-title").text == "That request is not valid"
    assert "state" in browser.find_element(By.ID, "error-detail").text
    browser.find_element(By.TAG_NAME, "body").send_keys("q")
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Review queue")
