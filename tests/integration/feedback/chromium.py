"""Driving the agent console in a real headless Chromium (Debian's chromium + chromedriver, via Selenium).

Importing this module skips the importing test module when Selenium or Chromium is missing (``make browser``
installs them), as the review page's browser test always has.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from libs.common.db import make_engine, make_sessionmaker
from libs.common.tables import Flag
from services.feedback.settings import Settings

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the browser test drives Chromium)")
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402, F401 (for the tests)
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402, F401

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("Chromium is not installed: apt-get install -y chromium chromium-driver", allow_module_level=True)


@pytest.fixture(name="browser")
def browser_fixture(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def waiting(driver: webdriver.Chrome) -> WebDriverWait:
    # Cards and rows are replaced in place after an action: an element found just before the swap goes stale.
    return WebDriverWait(driver, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))


def statuses(settings: Settings) -> dict[str, tuple[str, str | None]]:
    async def run() -> dict[str, tuple[str, str | None]]:
        engine = make_engine(settings.effective_database_url)
        try:
            async with make_sessionmaker(engine)() as session:
                flags = (await session.scalars(select(Flag))).all()
            return {f.flag_id: (f.status, f.final_correction) for f in flags}
        finally:
            await engine.dispose()

    return asyncio.run(run())


UNANSWERED = "你们支持用数字人民币付款吗？"
HANDOFF_REPLY = "这个问题我需要请人工客服为您处理。"
NEW_ENTRY = "支持。在「费用中心」-「充值」选择数字人民币即可。"


def card(driver: webdriver.Chrome, flag_id: str):  # type: ignore[no-untyped-def]
    return driver.find_element(By.ID, f"flag-{flag_id}")


def status_of(driver: webdriver.Chrome, flag_id: str) -> str:
    return card(driver, flag_id).get_attribute("data-status") or ""


def has_status(flag_id: str, status: str) -> Callable[[webdriver.Chrome], bool]:
    """A wait condition: the flag's card shows ``status`` (bound now, not when a loop variable has moved on)."""
    return lambda driver: status_of(driver, flag_id) == status


def sign_in(driver: webdriver.Chrome, key: str) -> None:
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#key-form button").click()
