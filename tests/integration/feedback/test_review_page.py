"""The review queue in a real headless Chromium: an admin approves, edits, rejects and releases flags (English)."""

from __future__ import annotations

import asyncio

from libs.common.artifacts import ArtifactStore
from libs.common.db import make_engine, make_sessionmaker
from libs.common.tables import Answer
from services.feedback.flags import flag_answer
from services.feedback.settings import Settings
from tests.integration.feedback.chromium import (
    HANDOFF_REPLY,
    NEW_ENTRY,
    UNANSWERED,
    By,
    Select,
    browser_fixture,  # noqa: F401 (registers the "browser" fixture)
    card,
    ec,
    sign_in,
    status_of,
    statuses,
    waiting,
    webdriver,
)
from tests.integration.feedback.conftest import add_answer, add_key, seed_live_dataset, serve

FIX = "进入「费用中心」-「发票管理」提交开票申请。"
EDITED = "在「账号中心」-「注销账号」提交申请，7天后生效。"


def seed(settings: Settings) -> dict[str, str]:
    async def run() -> dict[str, str]:
        engine = make_engine(settings.effective_database_url)
        try:
            sessions = make_sessionmaker(engine)
            parent = await seed_live_dataset(sessions, settings.home)
            ids = {role: await add_key(sessions, role) for role in ("admin", "agent", "app")}
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


def test_review_queue_in_a_real_browser(fb_settings: Settings, browser: webdriver.Chrome) -> None:
    ids = seed(fb_settings)
    wait = waiting(browser)
    with serve(fb_settings) as fb:
        browser.get(fb.url + "/?lang=en")
        assert "Enter an agent or admin API key" in browser.find_element(By.ID, "hint").text

        # A key without the agent or admin role is refused and forgotten.
        app_key = ids["app"]
        sign_in(browser, app_key)
        wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "403"))
        assert browser.find_element(By.ID, "key-form").is_displayed()

        # An agent sees the answers log but not the review queue.
        sign_in(browser, ids["agent"])
        wait.until(ec.visibility_of_element_located((By.ID, "answers-view")))
        assert not browser.find_element(By.ID, "tab-review").is_displayed()
        browser.find_element(By.ID, "forget").click()

        sign_in(browser, ids["admin"])
        wait.until(ec.visibility_of_element_located((By.ID, "tab-review"))).click()
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
        wait.until(ec.visibility_of_element_located((By.ID, "tab-review"))).click()
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

        # "all" lists every flag, whatever its status (it used to answer 400).
        Select(browser.find_element(By.ID, "status")).select_by_value("all")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#queue article.flag")) == 4)
        shown = {a.get_attribute("data-status") for a in browser.find_elements(By.CSS_SELECTOR, "#queue article.flag")}
        assert shown == {"released", "rejected", "open"}
        assert not browser.find_element(By.ID, "message").text

        browser.find_element(By.ID, "forget").click()
        assert browser.find_element(By.ID, "key-form").is_displayed()
        assert browser.execute_script("return sessionStorage.length") == 0
