"""The agent console end to end in a real headless Chromium: an agent finds today's wrong answer in the log,
corrects it in place, answers a handed-off question, an admin approves both in the same page and releases them,
and the agent sees the correction released; in Chinese (the default), then switched to English."""

from __future__ import annotations

import asyncio

from libs.common.db import make_engine, make_sessionmaker
from libs.common.tables import Answer
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
    has_status,
    sign_in,
    statuses,
    waiting,
    webdriver,
)
from tests.integration.feedback.conftest import add_answer, add_key, seed_live_dataset, serve

WRONG = "请联系销售。"
TODAY_FIX = "在「费用中心」-「退款」提交申请，款项3个工作日内原路退回。"


def seed_log(settings: Settings) -> dict[str, str]:
    """Today's answers as the gateway logged them: one wrong, a few right, one handed off."""

    async def run() -> dict[str, str]:
        engine = make_engine(settings.effective_database_url)
        try:
            sessions = make_sessionmaker(engine)
            parent = await seed_live_dataset(sessions, settings.home)
            ids = {role: await add_key(sessions, role) for role in ("admin", "agent")}
            for question in ("如何开具发票？", "怎样修改密码？", "怎样注销账号？"):
                await add_answer(sessions, question, "请查看帮助中心。", parent)
            ids["wrong"] = await add_answer(sessions, "退款多久到账？", WRONG, parent)
            ids["handed_off"] = await add_answer(sessions, UNANSWERED, HANDOFF_REPLY, parent)
            async with sessions() as session, session.begin():
                (await session.get(Answer, ids["handed_off"])).handoff = True
            return ids
        finally:
            await engine.dispose()

    return asyncio.run(run())


def log_row(driver: webdriver.Chrome, answer_id: str):  # type: ignore[no-untyped-def]
    return driver.find_element(By.ID, f"log-{answer_id}")


def flag_status(driver: webdriver.Chrome, answer_id: str) -> str:
    found = log_row(driver, answer_id).find_elements(By.CSS_SELECTOR, "[data-field=flag-status]")
    return (found[0].get_attribute("data-status") or "") if found else ""


def search(driver: webdriver.Chrome, text: str, outcome: str = "") -> None:
    box = driver.find_element(By.ID, "q")
    box.clear()
    box.send_keys(text)
    Select(driver.find_element(By.ID, "outcome")).select_by_value(outcome)
    driver.find_element(By.ID, "search-button").click()


def test_agent_corrects_an_answer_and_sees_it_live(fb_settings: Settings, browser: webdriver.Chrome) -> None:
    ids = seed_log(fb_settings)
    wait = waiting(browser)
    with serve(fb_settings) as fb:
        # Chinese by default: the page, its fragments and the script's messages.
        browser.get(fb.url + "/")
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
        assert "客服工作台" in browser.title and "API 密钥" in browser.find_element(By.ID, "hint").text

        sign_in(browser, ids["agent"])
        wait.until(ec.text_to_be_present_in_element((By.ID, "answers"), "共 5 条回答"))
        assert "客服" in browser.find_element(By.ID, "who").text
        assert not browser.find_element(By.ID, "tab-review").is_displayed()

        # Find today's wrong answer by the customer's words, and correct it in place.
        search(browser, "退款")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#answers article.answer")) == 1)
        row = log_row(browser, ids["wrong"])
        assert WRONG in row.text and "eng-live" in row.text and "已回答" in row.text
        row.find_element(By.TAG_NAME, "summary").click()
        correction = row.find_element(By.NAME, "correction")
        assert correction.get_attribute("value") == WRONG  # prefilled with the model's answer, to edit
        correction.clear()
        correction.send_keys(TODAY_FIX)
        row.find_element(By.NAME, "reason").send_keys("退款时效说错了")
        row.find_element(By.CSS_SELECTOR, "form.flag-answer button[type=submit]").click()
        wait.until(lambda d: flag_status(d, ids["wrong"]) == "open")
        assert "待审核" in log_row(browser, ids["wrong"]).text
        assert "等待管理员审核" in browser.find_element(By.ID, "message").text

        # A handed-off question is answered as a new FAQ entry from the same log.
        search(browser, "", "handed_off")
        wait.until(ec.presence_of_element_located((By.ID, f"log-{ids['handed_off']}")))
        row = log_row(browser, ids["handed_off"])
        row.find_element(By.TAG_NAME, "summary").click()
        row.find_element(By.NAME, "correction").send_keys(NEW_ENTRY)
        row.find_element(By.CSS_SELECTOR, "form.flag-answer button[type=submit]").click()
        wait.until(lambda d: flag_status(d, ids["handed_off"]) == "open")

        # An admin approves both in the same page: each goes live at once, then both are released.
        browser.find_element(By.ID, "forget").click()
        sign_in(browser, ids["admin"])
        wait.until(ec.visibility_of_element_located((By.ID, "tab-review"))).click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#queue article.flag")) == 2)
        queued = browser.find_elements(By.CSS_SELECTOR, "#queue article.flag")
        flag_ids = [f.get_attribute("data-flag-id") or "" for f in queued]
        for flag_id in flag_ids:
            card(browser, flag_id).find_element(By.CSS_SELECTOR, "button[value=approve]").click()
            wait.until(has_status(flag_id, "approved"))
        assert "已通过 · 已生效" in browser.find_element(By.ID, "queue").text
        assert {s for s, _ in statuses(fb_settings).values()} == {"approved"}
        browser.find_element(By.ID, "release").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "已将 2 条标记发布为数据集"))
        assert {s for s, _ in statuses(fb_settings).values()} == {"released"}

        # Back in the log, the answer shows its correction, released.
        browser.find_element(By.ID, "tab-answers").click()
        search(browser, "退款", "flagged")
        # The search swaps the list in place: the row is judged inside the wait, where a stale element is retried.
        wait.until(lambda d: flag_status(d, ids["wrong"]) == "released")
        wait.until(lambda d: TODAY_FIX in log_row(d, ids["wrong"]).text and "已发布" in log_row(d, ids["wrong"]).text)

        # The English switch keeps the signed-in tab and renders everything in English.
        browser.find_element(By.ID, "lang-en").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "answers"), "Answers: 5"))
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
        assert "agent console" in browser.title and "Answers log" in browser.find_element(By.ID, "tab-answers").text
        search(browser, "退款")
        wait.until(lambda d: "released" in log_row(d, ids["wrong"]).text and "已发布" not in d.page_source)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#answers article.answer")) == 1)
        browser.find_element(By.ID, "lang-zh").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "tab-answers"), "回答记录"))
