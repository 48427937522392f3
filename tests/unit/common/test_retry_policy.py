"""Which handler failures are retried (transient) and which are dead-lettered at once (poison), and the backoff."""

from __future__ import annotations

import json

import grpc
import pytest
from aiokafka.errors import KafkaConnectionError, RequestTimedOutError
from sqlalchemy.exc import OperationalError

from libs.common.broker import PoisonMessage, RetryPolicy, TransientError, classify
from libs.common.events import DatasetReady
from libs.common.settings import KefuSettings


def _validation_error() -> Exception:
    try:
        DatasetReady.model_validate({"dataset_id": "x"})
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError("expected a ValidationError")


def _json_error() -> Exception:
    try:
        json.loads("{not json")
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError("expected a JSONDecodeError")


def _wrapped(outer: Exception, cause: BaseException) -> Exception:
    try:
        raise outer from cause
    except Exception as exc:  # noqa: BLE001
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        _json_error(),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid"),
        _validation_error(),
        PoisonMessage("unsupported schema_version 9"),
        _wrapped(RuntimeError("could not read the event"), _json_error()),
    ],
    ids=["json", "utf8", "validation", "marked", "caused-by-parse"],
)
def test_parse_and_validation_failures_are_poison(exc: Exception) -> None:
    assert classify(exc) == "poison"


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),  # asyncpg when PostgreSQL is down
        OperationalError("SELECT 1", {}, ConnectionResetError("connection reset")),
        TimeoutError(),  # asyncio.timeout / wait_for too (asyncio.TimeoutError is TimeoutError)
        KafkaConnectionError("broker unreachable"),
        RequestTimedOutError(),
        grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "triton down"),
        TransientError("triton model not loaded yet"),
        _wrapped(TransientError("retry"), ValueError("a value")),
        RuntimeError("a bug"),  # unknown kind: retried, then dead-lettered after the last attempt
    ],
    ids=["db-refused", "db-operational", "timeout", "kafka", "kafka-timeout", "triton", "marked",
         "marked-wrapper", "unknown"],
)  # fmt: skip
def test_outages_timeouts_and_unknown_errors_are_transient(exc: Exception) -> None:
    assert classify(exc) == "transient"


def test_a_cause_cycle_terminates() -> None:
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__cause__, b.__cause__ = b, a
    assert classify(a) == "transient"


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    policy = RetryPolicy(attempts=6, backoff_s=0.5, max_backoff_s=4.0)
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0)]:
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(0.8 * base <= d <= 1.2 * base for d in delays), (attempt, min(delays), max(delays))


def test_defaults_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RetryPolicy.from_settings(KefuSettings()) == RetryPolicy(attempts=3, backoff_s=0.5, max_backoff_s=4.0)
    monkeypatch.setenv("KEFU_CONSUMER_RETRY_ATTEMPTS", "5")
    monkeypatch.setenv("KEFU_CONSUMER_RETRY_BACKOFF_SECONDS", "0.1")
    monkeypatch.setenv("KEFU_CONSUMER_RETRY_MAX_BACKOFF_SECONDS", "1")
    assert RetryPolicy.from_settings(KefuSettings()) == RetryPolicy(attempts=5, backoff_s=0.1, max_backoff_s=1.0)
    monkeypatch.setenv("KEFU_CONSUMER_RETRY_ATTEMPTS", "0")
    with pytest.raises(ValueError, match="consumer_retry_attempts"):
        KefuSettings()


async def test_a_dead_letter_is_published_even_if_the_broker_fails_at_first() -> None:
    from libs.common.broker import until_sent

    tries: list[int] = []

    async def send() -> None:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionRefusedError(111, "broker down")

    await until_sent(send, RetryPolicy(attempts=1, backoff_s=0.01, max_backoff_s=0.02))
    assert len(tries) == 3
