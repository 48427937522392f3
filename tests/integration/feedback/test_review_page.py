"""The review page in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from libs.common.artifacts import ArtifactStore
from libs.common.db import make_engine, make_sessionmaker
from libs.common.tables import Answer, Flag
from services.feedback.flags import flag_answer
from services.feedback.settings import Settings
from tests.integration.feedback.conftest import add_answer, add_key, seed_live_dataset, serve

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the browser test drives Chromium)")
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("Chromium is not installed: apt-get install -y chromium chromium-driver", allow_module_level=True)

FIX = "进入「费用中心」-「发票管理」提交开票申请。"
EDITED = "在「账号中心」-「注销账号」提交申请，7天后生效。"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
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


def seed(settings: Settings) -> dict[str, str]:
    async def run() -> dict[str, str]:
        engine = make_engine(settings.effective_database_url)
        try:
            sessions = make_sessionmaker(engine)
            parent = await seed_live_dataset(sessions, settings.home)
            ids = {"admin": await add_key(sessions, "admin"), "agent": await add_key(sessions, "agent")}
            cases = {
                "approve": ("如何开具发票？", FIX),
                "edit": ("怎样注销账号？", None),
                "reject": ("<b>bold</b> 价格 < 100 吗？", "<script>alert(1)</script>"),
            }
            for name, (question, correction) in cases.items():
                answer_id = await add_answer(sessions, question, "请联系销售。", parent)
                view = await flag_answer(
                    sessions,
                    ArtifactStore(settings.home),
                    answer_id=answer_id,
                    reason="wrong",
                    agent="小王",
                    correction=correction,
                )
                ids[name] = view.flag_id
            # A question the gateway handed to a human: it waits in the "unanswered" view, not in the flag queue.
            ids["handed_off"] = await add_answer(sessions, UNANSWERED, HANDOFF_REPLY, parent)
            async with sessions() as session, session.begin():
                (await session.get(Answer, ids["handed_off"])).handoff = True
            return ids
        finally:
            await engine.dispose()

    return asyncio.run(run())


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
    return card(driver, flag_id).find_element(By.CSS_SELECTOR, "[data-field=status]").text.lower()


def test_review_queue_in_a_real_browser(fb_settings: Settings, browser: webdriver.Chrome) -> None:
    ids = seed(fb_settings)
    # Cards are replaced in place after a review: an element found just before the swap goes stale.
    wait = WebDriverWait(browser, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    with serve(fb_settings) as fb:
        browser.get(fb.url + "/")
        assert "Enter an admin key" in browser.find_element(By.ID, "queue").text

        # A key without the admin role is refused and forgotten.
        browser.find_element(By.ID, "key").send_keys(ids["agent"])
        browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "403"))

        browser.find_element(By.ID, "forget").click()
        browser.find_element(By.ID, "key").send_keys(ids["admin"])
        browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
        wait.until(ec.presence_of_element_located((By.ID, f"flag-{ids['approve']}")))
        assert len(browser.find_elements(By.CSS_SELECTOR, "article.flag")) == 3
        first = card(browser, ids["approve"]).text
        for expected in ("如何开具发票？", "请联系销售。", FIX, "eng-live", "mdl-live", "ds-", "小王"):
            assert expected in first
        # Flag text is shown as text, never run as markup.
        rejected_card = card(browser, ids["reject"])
        assert "<b>bold</b> 价格 < 100 吗？" in rejected_card.text
        assert "<script>alert(1)</script>" in rejected_card.text
        assert not rejected_card.find_elements(By.TAG_NAME, "b")

        card(browser, ids["approve"]).find_element(By.CSS_SELECTOR, "button[value=approve]").click()
        wait.until(lambda d: status_of(d, ids["approve"]) == "approved")

        edit_card = card(browser, ids["edit"])
        assert not edit_card.find_elements(By.CSS_SELECTOR, "button[value=approve]")  # nothing to approve as is
        edit_card.find_element(By.NAME, "correction").send_keys(EDITED)
        edit_card.find_element(By.CSS_SELECTOR, "button[value=edit]").click()
        wait.until(lambda d: status_of(d, ids["edit"]) == "approved")
        assert EDITED in card(browser, ids["edit"]).text

        card(browser, ids["reject"]).find_element(By.CSS_SELECTOR, "button[value=reject]").click()
        wait.until(lambda d: status_of(d, ids["reject"]) == "rejected")
        assert statuses(fb_settings) == {
            ids["approve"]: ("approved", FIX),
            ids["edit"]: ("approved", EDITED),
            ids["reject"]: ("rejected", None),
        }

        # The key survives a reload of the tab, and never appears in a URL.
        browser.refresh()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#queue")))
        wait.until(lambda d: "No open flags." in d.find_element(By.ID, "queue").text)
        assert ids["admin"] not in browser.current_url

        browser.find_element(By.ID, "release").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "Released 2 flag(s) into dataset"))
        released = statuses(fb_settings)
        assert released[ids["approve"]][0] == released[ids["edit"]][0] == "released"

        # Handed-off questions: an agent answers one, which becomes an open flag for the same review.
        Select(browser.find_element(By.ID, "status")).select_by_value("unanswered")
        wait.until(ec.presence_of_element_located((By.ID, f"answer-{ids['handed_off']}")))
        assert UNANSWERED in browser.find_element(By.ID, "queue").text
        entry = browser.find_element(By.ID, f"answer-{ids['handed_off']}")
        entry.find_element(By.NAME, "answer").send_keys(NEW_ENTRY)
        entry.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "Proposed a new entry"))
        proposed = {k: v for k, v in statuses(fb_settings).items() if k not in released}
        assert list(proposed.values()) == [("open", None)] and NEW_ENTRY in browser.find_element(By.ID, "queue").text

        browser.find_element(By.ID, "forget").click()
        assert browser.find_element(By.ID, "key-form").is_displayed()
        assert browser.execute_script("return sessionStorage.length") == 0
