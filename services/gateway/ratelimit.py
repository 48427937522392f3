"""Per-key rate limits: in this process (the default), or shared by every gateway replica through Redis.

Both use GCRA (the generic cell rate algorithm), which behaves exactly like a token bucket of ``per_minute``
tokens refilled at ``per_minute / 60`` a second (bursts up to the whole minute's allowance, then one request per
emission interval) but keeps ONE number per key: the theoretical arrival time (TAT) of the next request. That is
why it suits a shared store: one key, one atomic read-modify-write in a Lua script, one round trip, and the key
expires by itself when the bucket would be full again. A fixed window (INCR + EXPIRE) was the other candidate:
simpler, but it lets a key through twice its limit across a window boundary and would behave unlike the
in-process limit people already rely on.

Redis's clock (``TIME`` inside the script) is the only clock, so replicas whose clocks disagree still agree on the
limit. If Redis cannot be reached (or answers slowly), a request is limited by this process's own GCRA instead of
failing: customers keep being served, and a key gets at most N replicas × its limit, as without Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

MINUTE_US = 60_000_000
KEY_PREFIX = "kefu:ratelimit:"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    tat_us: float  # the key's TAT after this request (unchanged when refused)
    retry_after: float  # seconds until a request would be allowed (0 when allowed)


def gcra(tat_us: float | None, now_us: float, per_minute: int) -> Decision:
    """One request of a key whose limit is ``per_minute`` (burst: as many) at ``now_us``; ``tat_us`` is the
    key's stored TAT or None for a key not seen (or expired). The Lua script below is this function, line by line."""
    # Whole microseconds, so Python and Lua (doubles) compute exactly the same numbers with no rounding drift. A
    # fractional now made (now + interval) - now come out above interval: a key's first request was refused about
    # once in 800 (a unit test failed on it).
    now_us = int(now_us)
    interval = max(1, MINUTE_US // per_minute)
    burst = interval * per_minute  # the whole allowance may be spent at once, as with the token bucket
    new_tat = max(tat_us if tat_us is not None else now_us, now_us) + interval
    wait = new_tat - now_us - burst
    if wait > 0:
        return Decision(False, tat_us if tat_us is not None else now_us, wait / 1e6)
    return Decision(True, new_tat, 0.0)


# KEYS[1]: the key's TAT (µs, as text). ARGV[1]: per_minute. Returns {allowed (1/0), retry_after_us}.
# Lua numbers are doubles: µs since 1970 (~1.8e15) stay exact below 2^53. TIME inside a script needs effects
# replication, the default since Redis 5.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local per_minute = tonumber(ARGV[1])
local interval = math.max(1, math.floor(60000000 / per_minute))
local burst = interval * per_minute
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - now - burst
if wait > 0 then
  return {0, math.ceil(wait)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
"""


class RateLimiter(Protocol):
    async def take(self, key_id: str, per_minute: int) -> float:
        """Spend one request of ``key_id``; returns seconds to wait (0: allowed)."""
        ...

    async def aclose(self) -> None: ...


class LocalLimiter:
    """One GCRA per key in this process: N replicas let a key through N times as fast."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._tat: dict[str, float] = {}

    async def take(self, key_id: str, per_minute: int) -> float:
        return self.take_now(key_id, per_minute)

    def take_now(self, key_id: str, per_minute: int) -> float:
        decision = gcra(self._tat.get(key_id), self.clock() * 1e6, per_minute)
        if decision.allowed:
            if len(self._tat) > 100_000:  # keys are from the database, but bound it all the same
                self._tat.clear()
            self._tat[key_id] = decision.tat_us
        return decision.retry_after

    async def aclose(self) -> None:
        return None


class RedisLimiter:
    """The same GCRA, atomic in Redis: the limit holds across every replica that shares ``url``."""

    def __init__(self, url: str, *, timeout: float = 0.25, fallback: LocalLimiter | None = None) -> None:
        import redis.asyncio as aioredis

        # A short socket timeout: a slow Redis must not hold a customer's request; the fallback takes over.
        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.script = self.client.register_script(GCRA_LUA)
        self.fallback = fallback or LocalLimiter()
        self._warned_at = float("-inf")

    async def take(self, key_id: str, per_minute: int) -> float:
        from redis.exceptions import RedisError

        try:
            allowed, wait_us = await self.script(keys=[KEY_PREFIX + key_id], args=[per_minute])
        except (RedisError, OSError, TimeoutError) as exc:
            if time.monotonic() - self._warned_at > 60:  # once a minute, not once a request
                self._warned_at = time.monotonic()
                log.warning("rate-limit store unreachable (%s); limiting per process until it is back", exc)
            return self.fallback.take_now(key_id, per_minute)
        return 0.0 if allowed else int(wait_us) / 1e6

    async def aclose(self) -> None:
        await self.client.aclose()


def make_limiter(redis_url: str | None, *, timeout: float = 0.25) -> RateLimiter:
    """In-process limits without a URL (the default); shared ones in Redis with it."""
    return RedisLimiter(redis_url, timeout=timeout) if redis_url else LocalLimiter()
