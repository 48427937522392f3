"""The agent console's one message catalogue: Simplified Chinese first (the agents' language), English second.

Templates and the page script take every string they show from here (templates via ``t``, the script via the
JSON data block in ``index.html``), so a new locale is one more dict. A key missing from a locale falls back to
Chinese; a unit test keeps the locales' keys equal so that never happens silently.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request

DEFAULT_LOCALE = "zh"

ZH: dict[str, str] = {
    "html_lang": "zh-CN",
    "title": "kefu · 客服工作台",
    "language": "语言",
    "lang_zh": "中文",
    "lang_en": "English",
    "key_label": "API 密钥（客服或管理员）",
    "use_key": "登录",
    "forget_key": "退出（清除密钥）",
    "hint_key": "请输入客服或管理员的 API 密钥。密钥只保存在本标签页中。",
    "signed_in": "已登录：{name}（{role}）",
    "role_agent": "客服",
    "role_admin": "管理员",
    "tab_answers": "回答记录",
    "tab_review": "审核队列",
    "search_text": "搜索问题或回答",
    "outcome": "结果",
    "outcome_any": "全部",
    "outcome_answered": "已回答",
    "outcome_handed_off": "转人工",
    "outcome_flagged": "已标记",
    "verbatim": "审核原文",
    "verbatim_hint": "按审核通过的更正原文回复：当前引擎尚未学会这条更正，重新训练后由模型生成",
    "engine": "引擎",
    "conversation": "对话",
    "show_conversation": "查看整段对话",
    "model": "模型",
    "dataset": "数据集",
    "since": "起始日期",
    "until": "截止日期",
    "search": "搜索",
    "answers_summary": "共 {total} 条回答 · 第 {page}/{pages} 页",
    "no_answers": "没有符合条件的回答。",
    "prev": "上一页",
    "next": "下一页",
    "question": "客户问题",
    "model_answer": "模型回答",
    "entries": "检索到的知识条目",
    "confidence": "置信度",
    "unspoken": "问的是{kinds}，最接近的条目没有提到",
    "kind_price": "价格",
    "kind_duration": "时长",
    "kind_count": "数量",
    "kind_opposite": "相反的操作",
    "latency": "耗时",
    "correction": "更正",
    "flag_this": "标记并改进回答",
    "new_entry": "作为新 FAQ 条目回答",
    "new_entry_label": "新条目的答案（与更正一样需审核）",
    "reason": "原因",
    "corrected_answer": "更正后的回答",
    "submit_flag": "提交",
    "handoff_reason": "转人工的问题：新增知识条目",
    "flagged_ok": "已提交，等待管理员审核。",
    "flag_status": "标记状态",
    "status_open": "待审核",
    "status_approved": "已通过 · 已生效",
    "status_rejected": "已驳回",
    "status_released": "已发布",
    "status_all": "全部",
    "status_unanswered": "未回答（转人工）",
    "refresh": "刷新",
    "release_now": "立即发布已通过的更正",
    "no_flags_open": "没有待审核的标记。",
    "no_flags_approved": "没有已通过的标记。",
    "no_flags_rejected": "没有已驳回的标记。",
    "no_flags_released": "没有已发布的标记。",
    "no_flags_all": "还没有任何标记。",
    "no_unanswered": "没有待处理的转人工问题。",
    "clusters_title": "近 {days} 天转人工或被标记的相似问题",
    "cluster_stats": "{count} 次 · 转人工 {handed_off} · 被标记 {flagged}",
    "cluster_wordings": "其他问法：",
    "flagged_by": "标记人 {agent}",
    "agent_correction": "客服的更正",
    "similar_to": "归入条目（作为相似问）",
    "attach_wording": "归入已有条目",
    "attach_wording_label": "这个问题问的是哪一条？通过后它成为该条目的相似问，立即生效，答案不变：",
    "similar_reason": "客户的问法，归入已有条目",
    "approved_correction": "通过的更正",
    "lineage": "来源",
    "released_in": "已发布到",
    "review": "审核",
    "train_correction": "用于训练的更正",
    "note": "备注",
    "approve": "通过",
    "edit_approve": "保存修改并通过",
    "reject": "驳回",
    "propose_entry": "提交新条目",
    "released": "已将 {count} 条标记发布为数据集 {dataset}（上一版本 {parent}）。",
    "released_before": "该内容此前已存储。",
    "nothing_to_release": "没有待发布的已通过标记。",
    "reviewed_approve": "标记 {id} 已通过，更正已生效。",
    "reviewed_edit": "标记 {id} 已修改并通过，更正已生效。",
    "reviewed_reject": "标记 {id} 已驳回。",
    "proposed": "已为回答 {id} 提交新条目，等待审核。",
    "forbidden_role": "该密钥无权使用工作台（需要客服或管理员角色）。",
}

EN: dict[str, str] = {
    "html_lang": "en",
    "title": "kefu · agent console",
    "language": "Language",
    "lang_zh": "中文",
    "lang_en": "English",
    "key_label": "API key (agent or admin)",
    "use_key": "Sign in",
    "forget_key": "Sign out (forget key)",
    "hint_key": "Enter an agent or admin API key. It is kept in this tab only.",
    "signed_in": "Signed in: {name} ({role})",
    "role_agent": "agent",
    "role_admin": "admin",
    "tab_answers": "Answers log",
    "tab_review": "Review queue",
    "search_text": "Search questions or answers",
    "outcome": "Outcome",
    "outcome_any": "any",
    "outcome_answered": "answered",
    "outcome_handed_off": "handed off",
    "outcome_flagged": "flagged",
    "verbatim": "approved text",
    "verbatim_hint": (
        "Served as the approved correction reads: the live engine has not learned it yet; "
        "the retrained engine generates it"
    ),
    "engine": "Engine",
    "conversation": "Conversation",
    "show_conversation": "Show the whole conversation",
    "model": "model",
    "dataset": "Dataset",
    "since": "From",
    "until": "To",
    "search": "Search",
    "answers_summary": "Answers: {total} · page {page}/{pages}",
    "no_answers": "No answers match.",
    "prev": "Previous",
    "next": "Next",
    "question": "Question",
    "model_answer": "Model answer",
    "entries": "Retrieved entries",
    "confidence": "confidence",
    "unspoken": "asks for {kinds}, which the closest entry never mentions",
    "kind_price": "a price",
    "kind_duration": "a duration",
    "kind_count": "a count",
    "kind_opposite": "the opposite operation",
    "latency": "Latency",
    "correction": "Correction",
    "flag_this": "Flag and correct this answer",
    "new_entry": "Answer as a new FAQ entry",
    "new_entry_label": "Answer for the new entry (reviewed like a correction)",
    "reason": "Reason",
    "corrected_answer": "Corrected answer",
    "submit_flag": "Submit",
    "handoff_reason": "转人工的问题：新增知识条目",
    "flagged_ok": "Submitted; waiting for an admin's review.",
    "flag_status": "Flag status",
    "status_open": "open",
    "status_approved": "approved · live",
    "status_rejected": "rejected",
    "status_released": "released",
    "status_all": "all",
    "status_unanswered": "unanswered (handed off)",
    "refresh": "Refresh",
    "release_now": "Release approved now",
    "no_flags_open": "No open flags.",
    "no_flags_approved": "No approved flags.",
    "no_flags_rejected": "No rejected flags.",
    "no_flags_released": "No released flags.",
    "no_flags_all": "No flags yet.",
    "no_unanswered": "No handed-off questions waiting.",
    "clusters_title": "Similar questions handed off or flagged in the last {days} days",
    "cluster_stats": "{count} times · handed off {handed_off} · flagged {flagged}",
    "cluster_wordings": "Other wordings: ",
    "flagged_by": "flagged by {agent}",
    "agent_correction": "Agent's correction",
    "similar_to": "Another wording of entry",
    "attach_wording": "Attach to an existing entry",
    "attach_wording_label": (
        "Which entry does this question ask about? Once approved it becomes that entry's similar question, "
        "live at once, the answer unchanged:"
    ),
    "similar_reason": "a customer's wording of an existing entry",
    "approved_correction": "Approved correction",
    "lineage": "Lineage",
    "released_in": "released in",
    "review": "Review",
    "train_correction": "Correction to train on",
    "note": "Note",
    "approve": "Approve",
    "edit_approve": "Save edit & approve",
    "reject": "Reject",
    "propose_entry": "Propose entry",
    "released": "Released {count} flag(s) into dataset {dataset} (parent {parent}).",
    "released_before": "That content was stored before.",
    "nothing_to_release": "No approved flags to release.",
    "reviewed_approve": "Flag {id} approved; the correction is live.",
    "reviewed_edit": "Flag {id} edited and approved; the correction is live.",
    "reviewed_reject": "Flag {id} rejected.",
    "proposed": "Proposed a new entry for answer {id}; it waits for review.",
    "forbidden_role": "This key may not use the console (needs the agent or admin role).",
}

CATALOGUE: dict[str, dict[str, str]] = {"zh": ZH, "en": EN}
LOCALES: tuple[str, ...] = tuple(CATALOGUE)


def locale_of(request: Request) -> str:
    """``?lang=`` if it names a locale we have, else Chinese. A URL parameter (not a cookie or Accept-Language):
    the page and every fragment it loads agree, and a link to the English page stays English."""
    lang = request.query_params.get("lang", "")
    return lang if lang in CATALOGUE else DEFAULT_LOCALE


def translator(locale: str) -> Callable[..., str]:
    """``t(key, **values)`` for one locale; an unknown key shows itself, so a gap is visible, not a crash."""
    messages = CATALOGUE.get(locale, ZH)

    def t(key: str, **values: object) -> str:
        text = messages.get(key) or ZH.get(key) or key
        return text.format(**values) if values else text

    return t
