"""Kinds of fact a question asks for (a price, a duration, a count, the opposite of an operation) and whether a
knowledge entry speaks of them.

A near-domain question often shares most of its words with an entry, yet asks for what the entry never says:
"高防IP多少钱一个月" against "遭受DDoS攻击怎么办？", "一个账号最多能创建多少个存储桶" against
"存储桶的名称可以修改吗？".
Lexical confidence is high for them (the words match), so retrieval alone answers them with the wrong fact; the
kind of fact asked is the tell. Retrieval's confidence is 0 when the best entry, in none of its wordings nor its
answer, speaks of a kind the question asks for: the question is handed off instead of answered from that entry.

The words are general customer-service Chinese, not any one FAQ's. The question-side patterns are narrow (a kind is
asked only in so many words); the entry-side ones broad (an entry that mentions days, prices or limits at all may
answer). Both match text folded by ``libs.common.folding.fold`` (多少钱/价格/收费 → 费用, 多长时间/几天 → 多久).
Measured on the development set and the held-out fixture: docs/benchmarks.md (sessions 11 and 12).
"""

from __future__ import annotations

import functools
import re

#: kind → (how a question asks for it, how an entry speaks of it)
KINDS: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {
    "price": (  # 费用中心 is the console's billing section, not a price
        re.compile("费用(?!中心)|要钱|付费吗|贵不贵|多贵|太贵|便宜|免费吗|单价|一年多少|一个月多少"),
        re.compile("费用(?!中心)|元|免费|计费|付费|价|钱|扣|账单|折|优惠|套餐|按量|包年|包月"),
    ),
    "duration": (
        re.compile("多久|几个小时|几小时|几分钟|几个工作日|几个星期|几周|几个月|什么时候能|多快|时长"),
        re.compile("多久|小时|分钟|天|工作日|时间|秒|周|月|年|即时|立即|实时|马上|随时|不停机|无需停机"),
    ),
    "count": (  # not 几个小时/几个月 (a duration), 哪几个 (which ones), 我有几个问题; 最多能保留多久 asks a duration
        re.compile(
            "多少个|(?<!哪)几个(?!问题|小时|工作日|月|星期|礼拜|钟头)|上限|最多能(?!.{0,8}多久)|数量|个数|多少条|几条|几台|多少台"
        ),
        re.compile(
            r"上限|最多|最少|至多|至少|数量|限制|配额|不限|无限|(\d+|[两三四五六七八九十百千万]+)\s*[个条台次份种副类项]"
        ),
    ),
}

# "你们有几个地域可以选" is answered by naming them: a list of three or more (A、B和C, folded text: ASCII commas) in an
# entry that names what is counted (…和中国香港等地域). Not a limit (最多能建多少个存储桶): a list of billing items or
# steps says nothing of one.
_HOW_MANY = re.compile(r"(?:几个|几种|多少个|多少种)([\u4e00-\u9fff]{2})")
_LIMIT = re.compile("上限|最多|最少|至多|至少|数量|配额|个数")
_LIST = re.compile(r"、[^,;。、\n]{1,12}(?:、|和|以及|及(?!时))")


def _named_in_a_list(question: str, entry_text: str) -> bool:
    counted = _HOW_MANY.search(question)
    return bool(counted and counted.group(1) in entry_text and not _LIMIT.search(question) and _LIST.search(entry_text))


def unanswered_kinds(question: str, entry_text: str) -> list[str]:
    """The kinds of fact ``question`` asks for that ``entry_text`` (an entry's wordings, its own question first, and
    its answer) never speaks of, nor asks for itself (a FAQ question that asks it expects it); both already folded."""
    kinds = [
        kind
        for kind, (asks, speaks) in KINDS.items()
        if asks.search(question)
        and not (speaks.search(entry_text) or asks.search(entry_text))
        and not (kind == "count" and _named_in_a_list(question, entry_text))
    ]
    return [*kinds, "opposite"] if _asks_the_opposite(question, entry_text) else kinds


#: Every kind ``unanswered_kinds`` may name.
ALL_KINDS = (*KINDS, "opposite")

# An operation and its opposite: a question about one that reaches an entry whose own question is about the other
# (域名转出 → 如何把域名转入, 内网带宽 → 公网带宽怎么计费) asks what the entry does not answer. General customer-service
# pairs, not one FAQ's, written as folded text is (关掉 → 关闭); each side a pattern, so words of one meaning count as
# one (开启/开通/打开) and longer words that merely contain one do not (办公网络, 国内网络). Only the entry's own
# question decides: an opposite named in passing by a similar question or the answer ("不用时可关闭") is not what
# the entry is about.
OPPOSITES = (
    ("开启|(?<![公展])开通|打开", "关闭"),  # not 公开通过, 展开通知
    ("转入", "转出"),
    ("充值", "提现"),
    ("上传", "下载"),
    ("挂载", "卸载"),
    ("添加", "删除"),
    ("增加", "减少"),
    ("入方向", "出方向"),
    ("(?<![国境])内网", "(?<!办)公网"),
    ("主账号", "子账号"),
)


@functools.cache
def _opposites() -> list[tuple[re.Pattern[str], re.Pattern[str]]]:
    pairs = [(re.compile(a), re.compile(b)) for a, b in OPPOSITES]
    return pairs + [(b, a) for a, b in pairs]


def _asks_the_opposite(question: str, entry_text: str) -> bool:
    """The question names one side of a pair and not the other; the entry's own question (``entry_text``'s first
    line) names the other, and nothing of the entry names the question's."""
    own = entry_text.split("\n", 1)[0]
    return any(
        side.search(question) and not other.search(question) and other.search(own) and not side.search(entry_text)
        for side, other in _opposites()
    )
