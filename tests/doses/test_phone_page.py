"""The phone page in a real headless Chromium (Debian's chromium + chromedriver via selenium)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from collector.doses.points import to_ns
from collector.settings import PersonSettings, Settings
from tests.doses.conftest import TOKEN, ThreadedServer, make_settings

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def zone_at(hour: int) -> str:
    """A fixed-offset zone where the local time is now ``hour``:MM (a browser's clock cannot be
    injected, so the test picks the zone instead: the same local hour whenever it runs)."""
    offset = (hour - datetime.now(UTC).hour) % 24
    offset -= 24 if offset > 14 else 0
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/UTC"


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, influx_server: Any,
             influx_db: str) -> Settings:
    """The dose tests' settings; parametrized indirectly with a zone, both persons live there, or
    with person settings both persons get (e.g. :data:`ALL_DAY`)."""
    s = make_settings(tmp_path / "state", influx_server.url, influx_db)
    param = getattr(request, "param", None)
    if isinstance(param, str) and param:
        s = s.model_copy(update={"persons": [PersonSettings(name="alice", timezone=param),
                                              PersonSettings(name="bob", timezone=param)]})
    elif isinstance(param, dict):
        s = s.model_copy(update={"persons": [p.model_copy(update=param) for p in s.persons]})
    return s


#: A 24-hour night window: a lights out tapped now is in a night at any hour the test runs.
ALL_DAY = {"night_start": dtime(12, 0), "night_end": dtime(12, 0)}


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        pytest.fail("needs Debian's chromium and chromium-driver: apt-get install -y chromium "
                    "chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=412,915"):
        opts.add_argument(arg)
    # the browser's clock in UTC, so that the times the tests type mean the same everywhere
    service = Service(executable_path=CHROMEDRIVER, env={**os.environ, "TZ": "UTC"})
    driver = webdriver.Chrome(options=opts, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def _text(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def test_log_see_undo_and_retry_after_failure(
    browser: WebDriver, threaded_server: ThreadedServer
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    wait = WebDriverWait(browser, 20)
    browser.get(threaded_server.url + "/app/")

    # no token yet: the page asks for it once and keeps it
    token_box = wait.until(ec.visibility_of_element_located((By.ID, "token-box")))
    assert "API token" in token_box.text
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "save-token").click()
    wait.until(lambda d: len(Select(d.find_element(By.ID, "person")).options) == 2)
    assert not browser.find_element(By.ID, "token-box").is_displayed()
    wait.until(lambda d: "No doses yet" in _text(d, "recent"))

    # log a dose with one tap
    Select(browser.find_element(By.ID, "person")).select_by_visible_text("bob")
    Select(browser.find_element(By.ID, "form")).select_by_visible_text("citrate")
    amount = browser.find_element(By.ID, "amount")
    amount.clear()
    amount.send_keys("400")
    browser.find_element(By.ID, "took").click()
    wait.until(lambda d: "Logged 400 mg citrate (64.7 mg elemental)" in _text(d, "status"))
    wait.until(lambda d: "400 mg citrate · bob" in _text(d, "recent"))
    doses = threaded_server.call(threaded_server.service.list_doses)
    assert [(d.person, d.form.value, d.amount_mg, d.source.value) for d in doses] == [
        ("bob", "citrate", 400.0, "web")]
    browser.save_screenshot(str(ARTIFACTS / "doses-phone-logged.png"))

    # undo it
    browser.find_element(By.CSS_SELECTOR, "#recent li button.undo").click()
    wait.until(lambda d: "Removed 400 mg citrate" in _text(d, "status"))
    wait.until(lambda d: "No doses yet" in _text(d, "recent"))
    assert threaded_server.call(threaded_server.service.list_doses) == []

    # the last choice is remembered, the token too
    browser.refresh()
    wait.until(lambda d: len(Select(d.find_element(By.ID, "person")).options) == 2)
    assert Select(browser.find_element(By.ID, "person")).first_selected_option.text == "bob"
    assert Select(browser.find_element(By.ID, "form")).first_selected_option.text == "citrate"
    assert browser.find_element(By.ID, "amount").get_attribute("value") == "400"
    assert not browser.find_element(By.ID, "token-box").is_displayed()

    # the server is unreachable: clear error, the entry is kept, Retry delivers it once
    threaded_server.go_offline()
    try:
        browser.find_element(By.ID, "took").click()
        wait.until(lambda d: "No connection to the magsleep server" in _text(d, "status"))
        wait.until(ec.visibility_of_element_located((By.ID, "pending-box")))
        assert "Not saved yet: 400 mg citrate for bob" in _text(browser, "pending-text")
        browser.save_screenshot(str(ARTIFACTS / "doses-phone-offline.png"))
        browser.find_element(By.ID, "took").click()  # a second tap must not lose the first
        wait.until(lambda d: "An earlier dose is not saved yet" in _text(d, "status"))
    finally:
        threaded_server.go_online()
    browser.find_element(By.ID, "retry").click()
    wait.until(lambda d: "Logged 400 mg citrate" in _text(d, "status"))
    wait.until(ec.invisibility_of_element_located((By.ID, "pending-box")))
    wait.until(lambda d: "400 mg citrate · bob" in _text(d, "recent"))
    browser.find_element(By.ID, "retry")  # still in the DOM, hidden
    browser.find_element(By.ID, "took").click()  # a second, new dose
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#recent li button.undo")) == 2)
    assert len(threaded_server.call(threaded_server.service.list_doses)) == 2
    browser.save_screenshot(str(ARTIFACTS / "doses-phone.png"))


def test_validation_error_is_shown(browser: WebDriver, threaded_server: ThreadedServer) -> None:
    wait = WebDriverWait(browser, 20)
    browser.get(threaded_server.url + "/app/")
    browser.execute_script(f"localStorage.setItem('magsleep.token', '{TOKEN}')")
    browser.refresh()
    wait.until(lambda d: len(Select(d.find_element(By.ID, "person")).options) == 2)
    Select(browser.find_element(By.ID, "form")).select_by_visible_text("oxide")
    amount = browser.find_element(By.ID, "amount")
    amount.clear()
    amount.send_keys("9000")
    browser.find_element(By.ID, "took").click()
    wait.until(lambda d: "above the ceiling of 2000 mg" in _text(d, "status"))
    assert _text(browser, "status").startswith("Not logged:")
    assert not browser.find_element(By.ID, "pending-box").is_displayed()
    assert threaded_server.call(threaded_server.service.list_doses) == []


def _wait_for(wait: WebDriverWait[WebDriver], element_id: str, text: str) -> None:
    """Wait until the element shows ``text``; on timeout say what it showed instead."""
    try:
        wait.until(lambda d: text in _text(d, element_id))
    except TimeoutException:
        raise AssertionError(f"#{element_id} never showed {text!r}; it shows "
                             f"{_text(wait._driver, element_id)!r}") from None


def _set_time(driver: WebDriver, hhmm: str) -> None:
    # a time input's typing format follows the browser's locale (12/24 h): set the value directly
    driver.execute_script("document.getElementById('lights-time').value = arguments[0]", hhmm)


def test_lights_out_listed_undone_and_retried_offline(
    browser: WebDriver, threaded_server: ThreadedServer, influx_server: Any, influx_db: str
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    wait = WebDriverWait(browser, 20)
    browser.get(threaded_server.url + "/app/")
    browser.execute_script(f"localStorage.setItem('magsleep.token', '{TOKEN}')")
    browser.refresh()
    wait.until(lambda d: len(Select(d.find_element(By.ID, "person")).options) == 2)
    Select(browser.find_element(By.ID, "person")).select_by_visible_text("alice")
    _wait_for(wait, "lights-list", "Nothing recorded")
    svc = threaded_server.service

    # lights out at 23:10 (the browser's clock is UTC: 00:10 in Berlin, inside alice's night)
    _set_time(browser, "23:10")
    browser.find_element(By.ID, "lights-out").click()
    _wait_for(wait, "status", "Lights out at 23:10")
    _wait_for(wait, "lights-list", "Lights out 23:10")
    assert browser.find_element(By.ID, "lights-time").get_attribute("value") == ""
    (stored,) = threaded_server.call(svc.list_lights)
    assert (stored.person, stored.event.value, stored.source.value) == ("alice", "lights_out", "web")
    assert stored.at.astimezone(UTC).strftime("%H:%M") == "23:10"
    assert stored.at <= datetime.now(UTC) + timedelta(minutes=5)  # the most recent 23:10
    threaded_server.call(lambda: svc.sink.flush(timeout=30))  # type: ignore[union-attr]
    (row,) = influx_server.rows("SELECT * FROM night_tag GROUP BY *", influx_db)
    assert (row["_tags"], row["night"], row["value"], row["at"]) == (
        {"person": "alice", "tag": "lights_out"}, stored.night.isoformat(), True, to_ns(stored.at))
    browser.save_screenshot(str(ARTIFACTS / "lights-phone-recorded.png"))

    # undo: gone from the list and the journal, and InfluxDB has value=false for it
    browser.find_element(By.CSS_SELECTOR, "#lights-list li button.undo").click()
    _wait_for(wait, "status", "Removed lights out 23:10")
    _wait_for(wait, "lights-list", "Nothing recorded")
    assert threaded_server.call(svc.list_lights) == []
    threaded_server.call(lambda: svc.sink.flush(timeout=30))  # type: ignore[union-attr]
    (row,) = influx_server.rows("SELECT * FROM night_tag GROUP BY *", influx_db)
    assert row["value"] is False

    # the server is unreachable: the entry is kept, a new tap refused, Retry delivers it once
    threaded_server.go_offline()
    try:
        _set_time(browser, "06:30")
        browser.find_element(By.ID, "lights-on").click()
        _wait_for(wait, "status", "No connection to the magsleep server")
        assert "The lights on is kept here" in _text(browser, "status")
        wait.until(ec.visibility_of_element_located((By.ID, "lights-pending-box")))
        assert "Not saved yet: lights on for alice at 06:30" in _text(browser, "lights-pending-text")
        browser.save_screenshot(str(ARTIFACTS / "lights-phone-offline.png"))
        browser.find_element(By.ID, "lights-out").click()
        _wait_for(wait, "status", "An earlier lights out/on is not saved yet")
    finally:
        threaded_server.go_online()
    browser.find_element(By.ID, "lights-retry").click()
    _wait_for(wait, "status", "Lights on at 06:30")
    wait.until(ec.invisibility_of_element_located((By.ID, "lights-pending-box")))
    _wait_for(wait, "lights-list", "Lights on 06:30")
    (stored,) = threaded_server.call(svc.list_lights)
    assert (stored.event.value, stored.at.astimezone(UTC).strftime("%H:%M")) == ("lights_on", "06:30")

    # a time outside the night window: the server's message, nothing kept for retrying
    _set_time(browser, "15:00")  # 16:00/17:00 in Berlin: between alice's windows (14:00-18:00)
    browser.find_element(By.ID, "lights-out").click()
    _wait_for(wait, "status", "outside alice's night window")
    assert not browser.find_element(By.ID, "lights-pending-box").is_displayed()
    assert len(threaded_server.call(svc.list_lights)) == 1
    browser.save_screenshot(str(ARTIFACTS / "lights-phone.png"))


class SkewedClock:
    """The server's clock, ``behind`` the real one (the browser keeps the real clock)."""

    def __init__(self, behind: timedelta) -> None:
        self.behind = behind

    def __call__(self) -> datetime:
        return datetime.now(UTC) - self.behind


SERVER_BEHIND = SkewedClock(timedelta(minutes=20))


@pytest.mark.parametrize("settings", [ALL_DAY], indirect=True, ids=["all-day-window"])
@pytest.mark.parametrize("server_now", [SERVER_BEHIND])
def test_server_clock_behind_keeps_taps_for_retry(
    browser: WebDriver, threaded_server: ThreadedServer
) -> None:
    """Issue 20 #13: a server 20 min behind the phone refuses the time; the page keeps the tap."""
    SERVER_BEHIND.behind = timedelta(minutes=20)
    wait = WebDriverWait(browser, 20)
    browser.get(threaded_server.url + "/app/")
    browser.execute_script(f"localStorage.setItem('magsleep.token', '{TOKEN}')")
    browser.refresh()
    wait.until(lambda d: len(Select(d.find_element(By.ID, "person")).options) == 2)
    _wait_for(wait, "status", "The clocks disagree: this phone is 20 min ahead of the magsleep server")
    assert "would be refused" in _text(browser, "status")

    Select(browser.find_element(By.ID, "person")).select_by_visible_text("alice")
    amount = browser.find_element(By.ID, "amount")
    amount.clear()
    amount.send_keys("300")
    browser.find_element(By.ID, "took").click()
    _wait_for(wait, "status", "Not logged yet. The clocks disagree: this phone is 20 min ahead")
    assert "The dose is kept here" in _text(browser, "status")
    wait.until(ec.visibility_of_element_located((By.ID, "pending-box")))
    assert "Not saved yet: 300 mg" in _text(browser, "pending-text")
    browser.find_element(By.ID, "lights-out").click()
    _wait_for(wait, "status", "Not saved yet. The clocks disagree")
    assert "The lights out is kept here" in _text(browser, "status")
    wait.until(ec.visibility_of_element_located((By.ID, "lights-pending-box")))
    svc = threaded_server.service
    assert threaded_server.call(svc.list_doses) == []
    assert threaded_server.call(svc.list_lights) == []
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "doses-phone-clocks.png"))

    # the server's clock is set right: Retry delivers both taps, at the phone's times
    SERVER_BEHIND.behind = timedelta(0)
    browser.find_element(By.ID, "retry").click()
    _wait_for(wait, "status", "Logged 300 mg")
    wait.until(ec.invisibility_of_element_located((By.ID, "pending-box")))
    browser.find_element(By.ID, "lights-retry").click()
    _wait_for(wait, "status", "Lights out at")
    wait.until(ec.invisibility_of_element_located((By.ID, "lights-pending-box")))
    (dose,) = threaded_server.call(svc.list_doses)
    assert abs(dose.taken_at - datetime.now(UTC)) < timedelta(minutes=2)
    assert len(threaded_server.call(svc.list_lights)) == 1


EVENING_ZONE = zone_at(21)
EVENING_CLOCK = SkewedClock(timedelta(0))


@pytest.mark.parametrize("settings", [EVENING_ZONE], indirect=True)
@pytest.mark.parametrize("server_now", [EVENING_CLOCK])
def test_tonight_morning_card_deviation_and_person_filter(
    browser: WebDriver, threaded_server: ThreadedServer, settings: Settings
) -> None:
    """Issue 13 #3 at 21:00 where the persons live: plan, morning card, deviations, filter, theme."""
    from collector.doses.entities import DoseCreate, Source
    from collector.effects.planner import PlanSpec
    from collector.effects.store import PlanStore, StoredPlan, tonight
    from collector.effects.tagging import night_time_ns

    zone = ZoneInfo(EVENING_ZONE)
    now = datetime.now(zone)
    night = tonight(now)
    assert 20 <= now.hour <= 22, (EVENING_ZONE, now)
    store = PlanStore.from_settings(settings)
    spec = PlanSpec(night - timedelta(days=6), 1, "randomised")
    store.save(StoredPlan("pa", "alice", spec, 1, 0, {night - timedelta(days=1): True,
                                                       night: False}))
    store.save(StoredPlan("pb", "bob", spec, 1, 0, {night - timedelta(days=1): False,
                                                     night: True}))
    svc = threaded_server.service

    def add(**body: Any) -> None:
        threaded_server.call(lambda: svc.add(DoseCreate(**body), default_source=Source.cli))

    add(person="bob", amount_mg=400, form="citrate", taken_at=now - timedelta(days=2))
    # alice took a dose 10 minutes ago, recorded then (the server's clock set back for it)
    EVENING_CLOCK.behind = timedelta(minutes=10)
    add(person="alice", amount_mg=300, form="glycinate")
    EVENING_CLOCK.behind = timedelta(0)
    # her nights: four before last night, and last night (provisional)
    pts = []
    for i, (tst, sol) in enumerate(((400, 20), (410, 10), (420, 30), (430, 15)), start=2):
        pts.append(((night - timedelta(days=i)), {"tst_min": float(tst), "sol_min": float(sol),
                                                  "se_pct": 88.0, "hr_mean_bpm": 55.0}))
    pts.append((night - timedelta(days=1), {"tst_min": 456.0, "sol_min": 8.0, "se_pct": 93.0,
                                            "hr_mean_bpm": 57.0, "provisional": True}))
    from collector.storage.lineprotocol import Point

    points = [Point("night", {"person": "alice", "dose": "unknown", "staging": "computed"},
                    {"night": d.isoformat(), **f}, night_time_ns(d)) for d, f in pts]
    threaded_server.call(lambda: svc.sink.put(points))  # type: ignore[union-attr]
    threaded_server.call(lambda: svc.sink.flush(timeout=30))  # type: ignore[union-attr]

    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": EVENING_ZONE})
    wait = WebDriverWait(browser, 20)
    browser.get(threaded_server.url + "/app/")
    browser.execute_script(f"localStorage.setItem('magsleep.token', '{TOKEN}');"
                           "localStorage.setItem('magsleep.person', 'alice')")
    browser.refresh()
    wait.until(lambda d: len(Select(d.find_element(By.ID, "person")).options) == 2)
    assert Select(browser.find_element(By.ID, "person")).first_selected_option.text == "alice"

    # tonight is a control night, and she has taken a dose: a deviation; last night another
    _wait_for(wait, "tonight-text", "Tonight: no magnesium")
    _wait_for(wait, "tonight-deviation",
              "Deviation tonight: magnesium logged on a control night of the plan")
    _wait_for(wait, "last-deviation", "no magnesium logged on a magnesium night of the plan")
    # the morning card: last night against the median of her four nights before
    _wait_for(wait, "morning-text", "(provisional: it may still change)")
    assert "usual = median of your 4 nights before" in _text(browser, "morning-text")
    row = browser.find_element(By.CSS_SELECTOR, "#morning-table tr[data-metric=tst_min]")
    assert row.text == "Slept 7 h 36 min usual 6 h 55 min +41 min"
    assert row.find_elements(By.CSS_SELECTOR, "td.better")
    latency = browser.find_element(By.CSS_SELECTOR, "#morning-table tr[data-metric=sol_min]")
    assert latency.text == "Fell asleep in 8 min usual 18 min −10 min"
    assert latency.find_elements(By.CSS_SELECTOR, "td.better")
    hr = browser.find_element(By.CSS_SELECTOR, "#morning-table tr[data-metric=hr_mean_bpm]")
    assert hr.text.endswith("+2 bpm") and hr.find_elements(By.CSS_SELECTOR, "td.worse")
    assert not browser.find_elements(By.CSS_SELECTOR, "#morning-table tr[data-metric=rmssd_ms]")

    # the person filter: only alice's doses are listed
    _wait_for(wait, "recent", "300 mg glycinate · alice")
    assert "bob" not in _text(browser, "recent")
    assert "of alice" in _text(browser, "recent-who")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "doses-phone-tonight.png"))
    assert browser.execute_script("return document.documentElement.classList.contains('dark')")

    # Undo of a dose recorded 10 minutes ago asks first; dismissing keeps it
    browser.find_element(By.CSS_SELECTOR, "#recent li button.undo").click()
    alert = wait.until(ec.alert_is_present())
    assert "recorded 10 min ago. Remove it?" in alert.text
    alert.dismiss()
    assert len(threaded_server.call(lambda: svc.list_doses(person="alice"))) == 1
    browser.find_element(By.CSS_SELECTOR, "#recent li button.undo").click()
    wait.until(ec.alert_is_present()).accept()
    _wait_for(wait, "status", "Removed 300 mg glycinate")
    wait.until(ec.invisibility_of_element_located((By.ID, "tonight-deviation")))
    assert threaded_server.call(lambda: svc.list_doses(person="alice")) == []

    # a new dose on the control night: the deviation is back; Undo right away needs no question
    Select(browser.find_element(By.ID, "form")).select_by_visible_text("glycinate")
    amount = browser.find_element(By.ID, "amount")
    amount.clear()
    amount.send_keys("300")
    browser.find_element(By.ID, "took").click()
    _wait_for(wait, "tonight-deviation", "Deviation tonight")
    browser.find_element(By.CSS_SELECTOR, "#recent li button.undo").click()
    _wait_for(wait, "status", "Removed 300 mg glycinate")
    wait.until(ec.invisibility_of_element_located((By.ID, "tonight-deviation")))

    # bob: tonight magnesium, his usual dose; his list only; remembered after a reload
    Select(browser.find_element(By.ID, "person")).select_by_visible_text("bob")
    _wait_for(wait, "tonight-text", "Tonight: magnesium, 400 mg citrate")
    _wait_for(wait, "recent", "400 mg citrate · bob")
    assert "alice" not in _text(browser, "recent")
    _wait_for(wait, "morning-text", "No night for bob yet")
    assert not browser.find_element(By.ID, "tonight-deviation").is_displayed()
    browser.refresh()
    _wait_for(wait, "tonight-text", "Tonight: magnesium, 400 mg citrate")
    assert Select(browser.find_element(By.ID, "person")).first_selected_option.text == "bob"

    # the theme: light at noon, dark at noon when the system asks for it
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": zone_at(12)})
    browser.refresh()
    _wait_for(wait, "tonight-text", "Tonight")
    noon = browser.execute_script("return new Date().getHours()")
    assert 11 <= noon <= 13
    assert not browser.execute_script("return document.documentElement.classList.contains('dark')")
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    browser.refresh()
    _wait_for(wait, "tonight-text", "Tonight")
    assert browser.execute_script("return document.documentElement.classList.contains('dark')")
