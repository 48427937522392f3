"""Pure parts of the rate limit: GCRA, the in-process limiter, the fallback when Redis is away, and when `kefu up`
starts a Redis beside the gateway."""

from __future__ import annotations

import socket

import pytest

from services.gateway import sidecars
from services.gateway.ratelimit import LocalLimiter, RedisLimiter, gcra, make_limiter
from tests.conftest import free_port


def test_gcra_allows_the_whole_minute_at_once_then_one_per_interval() -> None:
    tat, now = None, 1_000_000.0
    for _ in range(3):
        decision = gcra(tat, now, per_minute=3)
        assert decision.allowed and decision.retry_after == 0
        tat = decision.tat_us
    refused = gcra(tat, now, per_minute=3)
    assert not refused.allowed and refused.retry_after == pytest.approx(20.0)  # one request every 20 s
    assert refused.tat_us == tat  # a refused request spends nothing
    assert gcra(tat, now + 19_999_999, per_minute=3).allowed is False
    assert gcra(tat, now + 20_000_000, per_minute=3).allowed is True
    # Idle for a long time: the allowance refills to the burst, never beyond it.
    later = now + 3_600_000_000
    allowed = 0
    for _ in range(5):
        decision = gcra(tat, later, per_minute=3)
        allowed += decision.allowed
        tat = decision.tat_us if decision.allowed else tat
    assert allowed == 3


@pytest.mark.parametrize("per_minute", [1, 7, 600, 997])
def test_gcra_burst_is_exactly_the_limit_for_awkward_rates(per_minute: int) -> None:
    """Whole microseconds: no rounding drift lets one request more (or fewer) through."""
    tat, now, allowed = None, 1.7e15, 0
    for _ in range(per_minute + 3):
        decision = gcra(tat, now, per_minute)
        allowed += decision.allowed
        tat = decision.tat_us if decision.allowed else tat
    assert allowed == per_minute


@pytest.mark.parametrize("per_minute", [1_000_000, 10**7])
def test_gcra_edge_for_huge_rates(per_minute: int) -> None:
    now, interval = 1.7e15, 60_000_000 // per_minute
    assert gcra(now + interval * (per_minute - 1), now, per_minute).allowed
    assert not gcra(now + interval * per_minute, now, per_minute).allowed


async def test_local_limiter_is_per_key_and_refills() -> None:
    clock = [100.0]
    limiter = LocalLimiter(clock=lambda: clock[0])
    assert [await limiter.take("a", 2) for _ in range(2)] == [0.0, 0.0]
    assert await limiter.take("a", 2) == pytest.approx(30.0)
    assert await limiter.take("b", 2) == 0.0  # another key has its own allowance
    clock[0] += 30
    assert await limiter.take("a", 2) == 0.0


async def test_a_keys_first_request_is_allowed_whatever_the_clock_reads() -> None:
    # 2118.005554 s: with the clock's fractional microseconds, (now + 60 s) - now - 60 s came out above 0
    assert gcra(None, 2118.005554e6, 1).allowed
    limiter = LocalLimiter(clock=lambda: 2118.005554)
    assert await limiter.take("k", 1) == 0.0
    assert await limiter.take("k", 1) > 0


async def test_redis_unreachable_falls_back_to_the_process_limit() -> None:
    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)  # nothing listens there
    try:
        assert [await limiter.take("k", 2) for _ in range(2)] == [0.0, 0.0]
        assert await limiter.take("k", 2) > 0
    finally:
        await limiter.aclose()


def test_make_limiter_without_url_is_in_process() -> None:
    assert isinstance(make_limiter(None), LocalLimiter)


@pytest.mark.parametrize(
    ("url", "port"),
    [
        (None, None),
        ("redis://127.0.0.1:6390/0", 6390),
        ("redis://localhost", 6379),
        ("redis://[::1]:7000", 7000),
        ("redis://redis.internal:6379", None),
        ("rediss://127.0.0.1:6390", None),  # TLS: someone else's server, never one we start
    ],
)
def test_local_redis_port(url: str | None, port: int | None) -> None:
    assert sidecars.local_redis_port(url) == port


def test_sidecar_only_when_asked_for_and_nothing_answers(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from libs.common.settings import KefuSettings

    common = KefuSettings(home=tmp_path)
    monkeypatch.delenv("KEFU_REDIS_URL", raising=False)
    assert sidecars.sidecars(common) == []
    free = free_port()
    monkeypatch.setenv("KEFU_REDIS_URL", f"redis://127.0.0.1:{free}/0")
    monkeypatch.setattr(sidecars.shutil, "which", lambda _name: "/usr/bin/redis-server")
    [car] = sidecars.sidecars(common)
    assert car.name == "redis" and car.ready_port == free and car.argv[-2:] == ["--port", str(free)]
    assert car.argv[car.argv.index("--save") + 1] == ""  # memory only
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        monkeypatch.setenv("KEFU_REDIS_URL", f"redis://localhost:{listening.getsockname()[1]}")
        assert sidecars.sidecars(common) == []  # something answers: use it
    monkeypatch.setenv("KEFU_REDIS_URL", f"redis://127.0.0.1:{free}/0")
    monkeypatch.setattr(sidecars.shutil, "which", lambda _name: None)
    with pytest.raises(RuntimeError, match="redis-server is not installed"):
        sidecars.sidecars(common)
