"""Prometheus metrics of the gateway: what Triton does not measure for a streaming model (TTFT, time per output
token, tokens/s), requests by outcome, and request lengths (served on the shared ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_TOKEN_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)

REQUESTS = Counter(
    "kefu_gateway_requests",
    "Chat requests by API (http|grpc), streaming or not, and outcome code (HTTP status / gRPC status name).",
    ["api", "stream", "code"],
)
TTFT = Histogram(
    "kefu_gateway_ttft_seconds", "Time from request to the first token.", ["route"], buckets=_LATENCY_BUCKETS
)
TPOT = Histogram(
    "kefu_gateway_time_per_output_token_seconds",
    "Decode time per output token after the first.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
TOKENS_PER_SECOND = Histogram(
    "kefu_gateway_tokens_per_second",
    "Completion tokens per second of one answer, first token included.",
    ["route"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)
COMPLETION_TOKENS = Counter("kefu_gateway_completion_tokens", "Completion tokens streamed (rate() = tokens/s).")
PROMPT_TOKENS = Histogram(
    "kefu_gateway_prompt_tokens", "Prompt length in tokens (template included).", buckets=_TOKEN_BUCKETS
)
TOTAL_TOKENS = Histogram(
    "kefu_gateway_sequence_tokens", "Prompt + completion tokens of one answer.", buckets=_TOKEN_BUCKETS
)
ROLLOUTS = Counter("kefu_gateway_rollouts", "Rollout decisions (live, canary, promoted, rolled_back).", ["action"])
HANDOFFS = Counter(
    "kefu_gateway_handoffs",
    "Questions handed to a human (retrieval confidence below the engine's threshold, or an answer the answer check "
    "found not grounded in its references), by route (live|canary).",
    ["route"],
)
UNGROUNDED = Counter(
    "kefu_gateway_ungrounded_answers",
    "Answers handed off by the answer check: their opening was not in their references, by route (live|canary).",
    ["route"],
)
RETRIEVAL_SECONDS = Histogram(
    "kefu_gateway_retrieval_seconds",
    "Knowledge-base retrieval time per question.",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1),
)

# Answer quality per engine, so canary and live compare on one dashboard and alerts can compare engines.
ANSWERS = Counter(
    "kefu_gateway_answers",
    "Finished answers by engine, route (live|canary) and outcome (answered|handed_off|approved_text|error).",
    ["engine", "route", "outcome"],
)
RETRIEVAL_CONFIDENCE = Histogram(
    "kefu_gateway_retrieval_confidence",
    "Retrieval confidence of each question (information-weighted share of its characters found in the best entry); "
    "below 0.2 the question is far from every entry (an unseen topic) or asks for a price, duration, count or the "
    "opposite operation its best entry never mentions (0; the answer log says which); below the engine's "
    "calibrated threshold (~0.4 on the sample FAQ) it is handed off.",
    ["engine", "route"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
ANSWER_CHARS = Histogram(
    "kefu_gateway_answer_characters",
    "Length of each answered (not handed-off) answer in characters.",
    ["engine", "route"],
    buckets=(8, 16, 32, 64, 128, 256, 512, 1024, 2048),
)


def observe_answer(
    engine: str, route: str, status: str, handoff: bool, confidence: float | None, text: str, *, verbatim: bool = False
) -> None:
    """One finished answer into the quality metrics (cancelled answers are neither right nor wrong: skipped).
    ``verbatim``: an approved correction served as is (outcome ``approved_text``), not the model's answer."""
    if status == "cancelled":
        return
    outcome = "error" if status == "error" else "handed_off" if handoff else "approved_text" if verbatim else "answered"
    ANSWERS.labels(engine, route, outcome).inc()
    if confidence is not None:
        RETRIEVAL_CONFIDENCE.labels(engine, route).observe(confidence)
    if outcome == "answered":
        ANSWER_CHARS.labels(engine, route).observe(len(text))
