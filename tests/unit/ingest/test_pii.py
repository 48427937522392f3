"""Every PII kind is redacted with its placeholder; hotlines and look-alike numbers are kept."""

from __future__ import annotations

import pytest

from libs.common.pii import Redactor, luhn_valid, valid_id_card
from libs.datasets.options import IngestOptions

REDACTOR = Redactor(IngestOptions())


@pytest.mark.parametrize(
    "phone",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+86 13800138000",
        "+86-138-0013-8000",
        "+86 138 0013 8000",
        "(+86)13800138000",
        "0086 19912345678",
    ],
)
def test_mobile_numbers_in_every_format(phone: str) -> None:
    result = REDACTOR.redact(f"我的手机是{phone}，请回电。")
    assert result.text == "我的手机是[PHONE]，请回电。"
    assert result.counts == {"phone": 1}


@pytest.mark.parametrize("hotline", ["400-820-8820", "4008208820", "800-820-8820", "400 820 8820", "010-62345678"])
def test_service_hotlines_and_landlines_are_kept(hotline: str) -> None:
    text = f"请拨打{hotline}咨询。"
    assert REDACTOR.redact(text).text == text


def test_emails() -> None:
    result = REDACTOR.redact("发到 zhang.san@example.com 或 li_si+invoice@mail.example.cn。")
    assert result.text == "发到 [EMAIL] 或 [EMAIL]。"
    assert result.counts == {"email": 2}


def test_email_with_phone_like_local_part_counts_once_as_email() -> None:
    result = REDACTOR.redact("13800138000@163.com")
    assert (result.text, dict(result.counts)) == ("[EMAIL]", {"email": 1})


def test_company_email_domains_can_be_kept() -> None:
    redactor = Redactor(IngestOptions(keep_email_domains=("CloudMax.com",)))
    text = "联系 support@cloudmax.com 或 billing@help.cloudmax.com，不要发到 a@b.com。"
    assert redactor.redact(text).text == "联系 support@cloudmax.com 或 billing@help.cloudmax.com，不要发到 [EMAIL]。"


def test_id_card_with_valid_checksum() -> None:
    assert valid_id_card("440305199003071236")
    assert valid_id_card("11010519491231002X")
    assert valid_id_card("11010519491231002x")
    result = REDACTOR.redact("身份证440305199003071236和11010519491231002X")
    assert result.text == "身份证[ID_CARD]和[ID_CARD]"
    assert result.counts == {"id_card": 2}


@pytest.mark.parametrize(
    "number",
    [
        "440305199003071237",  # wrong check digit: an order number, not an ID (and not Luhn-valid either)
        "440305199013071236",  # month 13
        "440305199002301236",  # 30 February
    ],
)
def test_invalid_ids_are_not_redacted(number: str) -> None:
    assert not valid_id_card(number)
    assert REDACTOR.redact(f"订单{number}已发货").text == f"订单{number}已发货"


@pytest.mark.parametrize("card", ["6222021234567890128", "6222 0212 3456 7890 128", "6217-0012-3456-7893"])
def test_luhn_valid_bank_cards(card: str) -> None:
    result = REDACTOR.redact(f"卡号{card}扣款失败")
    assert result.text == "卡号[BANK_CARD]扣款失败"
    assert result.counts == {"bank_card": 1}


@pytest.mark.parametrize(
    "number",
    [
        "6217 0012 3456 7891",  # fails Luhn
        "1234567812345670",  # passes Luhn but no card starts with 1: an order number
        "621700123456789",  # 15 digits: too short for a card
    ],
)
def test_non_card_numbers_are_kept(number: str) -> None:
    assert REDACTOR.redact(f"编号{number}。").text == f"编号{number}。"


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_several_kinds_in_one_text_are_counted_by_kind() -> None:
    text = "手机13800138000，邮箱a@example.com，卡4111 1111 1111 1111，证440305199003071236，热线400-820-8820"
    result = REDACTOR.redact(text)
    assert result.text == "手机[PHONE]，邮箱[EMAIL]，卡[BANK_CARD]，证[ID_CARD]，热线400-820-8820"
    assert result.counts == {"phone": 1, "email": 1, "bank_card": 1, "id_card": 1}


def test_addresses_only_when_enabled() -> None:
    text = "寄到中关村大街27号1101室"
    assert REDACTOR.redact(text).text == text
    redactor = Redactor(IngestOptions(pii_kinds=("address", "phone")))
    result = redactor.redact(text)
    assert "[ADDRESS]" in result.text and "27号" not in result.text
    assert result.counts == {"address": 1}


def test_redaction_can_be_switched_off() -> None:
    text = "手机13800138000"
    assert Redactor(IngestOptions(redact_pii=False)).redact(text).text == text


def test_sensitive_words_are_masked_case_insensitively() -> None:
    redactor = Redactor(IngestOptions(sensitive_words=("天穹计划", "ProjectX", "  ")))
    result = redactor.redact("天穹计划和projectx都是内部代号")
    assert result.text == "[SENSITIVE]和[SENSITIVE]都是内部代号"
    assert result.counts == {"sensitive_word": 2}
    assert result.has_sensitive


def test_unknown_pii_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown PII kinds"):
        IngestOptions(pii_kinds=("passport",))
