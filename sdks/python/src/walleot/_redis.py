"""`RedisStore`: pending payments in Redis, shared by every server process that names
the same Redis and prefix, as several processes behind a load balancer do.

Each step is one Lua script, so it is atomic across processes: a payment is claimed
by one confirmation only, and the caps on open payments hold however many processes
open payments at once. Keys, under the prefix:

    pay:<payment id>   a hash: the payment (JSON), its owner, state, result, ...
    open               a sorted set of every unpaid payment, scored by link expiry
    open:<owner>       the same for one owner, so counts never scan

Retention is by key expiry, as the memory store's: an unpaid payment goes a day after
its link expired, a kept result a day after it was settled; a claimed payment still
running or settling is kept at least as long as the longer of those two after its
last step (Redis outlives a process that died mid-run, so nothing may stay for ever). The sets lose their
expired members on each new payment and expire with their last link.

The scripts touch keys they compute from the prefix, so this is for a single Redis
(or a primary with replicas); on Redis Cluster use a prefix with a hash tag, such as
"{walleot}:", which keeps every key in one slot. The layout and the JSON are those of
the Node SDK's RedisStore.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from typing import Any

from ._price import Price
from ._store import PendingPayment, Snapshot, StoreError, TooManyOpen

# Keeps `key` at least `ms` milliseconds from now (a key without expiry stays so).
_KEEP_AT_LEAST = """
local function keep_at_least(key, ms)
  local left = redis.call('PTTL', key)
  if left >= 0 and left < tonumber(ms) then redis.call('PEXPIRE', key, ms) end
end
"""

# KEYS: pay:<id>, open, open:<owner>
# ARGV: id, payment JSON, owner, expires (s), now (s), keep until (ms), max mine, max total (-1: none)
_PUT = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[5])
-- A retried put that had been applied: kept already.
if redis.call('EXISTS', KEYS[1]) == 1 then return {'kept', 0, 0} end
local mine = redis.call('ZCARD', KEYS[3])
local total = redis.call('ZCARD', KEYS[2])
local max_mine, max_total = tonumber(ARGV[7]), tonumber(ARGV[8])
if max_mine >= 0 and mine >= max_mine then return {'owner', mine, total} end
if max_total >= 0 and total >= max_total then return {'total', mine, total} end
redis.call('HSET', KEYS[1], 'payment', ARGV[2], 'owner', ARGV[3], 'state', 'awaiting')
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
if tonumber(ARGV[4]) > tonumber(ARGV[5]) then
  for i = 2, 3 do
    redis.call('ZADD', KEYS[i], ARGV[4], ARGV[1])
    local last = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', KEYS[i], string.format('%.0f', math.ceil(tonumber(last[2]) * 1000)))
  end
end
return {'kept', mine, total}
"""

# KEYS: open, open:<owner>; ARGV: now (s)
_OPEN_COUNTS = """
return {
  redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[1], '+inf'),
  redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf'),
}
"""

# KEYS: pay:<id>, open; ARGV: id, prefix of the owners' sets, claim token, keep (ms).
# The token makes a retried claim answer "awaiting" again to the caller that made it,
# so a lost reply cannot leave a payment running with nobody running it.
_CLAIM = _KEEP_AT_LEAST + """
local found = redis.call('HMGET', KEYS[1], 'payment', 'state', 'result', 'succeeded', 'owner', 'claimer')
if not found[1] then return false end
local state = found[2]
if state == 'awaiting' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'claimer', ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', ARGV[2] .. found[5], ARGV[1])
  keep_at_least(KEYS[1], ARGV[4])
elseif state == 'running' and found[6] == ARGV[3] then
  state = 'awaiting'
end
return {found[1], state, found[3] or '', found[4] or ''}
"""

# KEYS: pay:<id>; ARGV: result JSON, succeeded (1/0), now (s), keep (ms)
_RAN = _KEEP_AT_LEAST + """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'ran', 'result', ARGV[1], 'succeeded', ARGV[2], 'ran_at', ARGV[3])
keep_at_least(KEYS[1], ARGV[4])
return 1
"""

# KEYS: pay:<id>; ARGV: result JSON, succeeded (1/0), now (s), keep (ms).
# Done once: a second settlement never replaces the result handed out first.
_FINISH = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' and state ~= 'ran' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'result', ARGV[1], 'succeeded', ARGV[2], 'ran_at', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


def payment_json(p: PendingPayment) -> str:
    """The payment as the Node SDK writes it (camelCase)."""
    return json.dumps(
        {
            "paymentId": p.payment_id,
            "sessionId": p.session_id,
            "paymentUrl": p.payment_url,
            "tool": p.tool,
            "arguments": p.arguments,
            "argumentsHash": p.arguments_hash,
            "price": {"minor": p.price.minor, "currency": p.price.currency},
            "subject": p.subject,
            "owner": p.owner,
            "expiresAt": p.expires_at,
            "expiresUnix": p.expires_unix,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def payment_from_json(text: str | bytes) -> PendingPayment:
    d = json.loads(text)
    return PendingPayment(
        payment_id=d["paymentId"],
        session_id=d["sessionId"],
        payment_url=d["paymentUrl"],
        tool=d["tool"],
        arguments=d["arguments"],
        arguments_hash=d["argumentsHash"],
        price=Price(int(d["price"]["minor"]), d["price"]["currency"]),
        subject=d.get("subject"),
        owner=d["owner"],
        expires_at=d["expiresAt"],
        expires_unix=float(d["expiresUnix"]),
    )


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class StoreUnavailable(StoreError):
    """Redis could not be reached or failed: the step did not happen (or its outcome
    is unknown, which every step here tolerates on a retry)."""


class RedisStore:
    """Pending payments in Redis, shared by the server processes that name the same
    Redis and prefix:

    ```python
    Walleot(mcp, ..., store=RedisStore("redis://127.0.0.1:6379/0", prefix="walleot:"))
    ```

    `timeout` bounds each connection and command (seconds); a Redis that is down or
    slow is answered to the caller as a clear tool error, nothing charged. Needs the
    `redis` package (`pip install 'walleot[redis]'`).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "walleot:",
        *,
        after_expiry_seconds: float = 24 * 3600,
        results_seconds: float = 24 * 3600,
        timeout: float = 5.0,
    ) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import ExponentialBackoff
            from redis.exceptions import RedisError
        except ImportError as missing:  # pragma: no cover
            raise ImportError("RedisStore needs the redis package: pip install 'walleot[redis]'") from missing
        # What a failing Redis raises: its client's errors, and the socket's.
        self._failures: tuple[type[BaseException], ...] = (RedisError, OSError)
        # Two quick retries: a dropped connection is re-made at once, while a Redis
        # that is down is reported within a fraction of a second, not after seconds.
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 2),
        )
        self.prefix = prefix
        self.after_expiry = after_expiry_seconds
        self.results = results_seconds
        self._put = self.client.register_script(_PUT)
        self._open_counts = self.client.register_script(_OPEN_COUNTS)
        self._claim = self.client.register_script(_CLAIM)
        self._ran = self.client.register_script(_RAN)
        self._finish = self.client.register_script(_FINISH)

    def _key(self, payment_id: str) -> str:
        return f"{self.prefix}pay:{payment_id}"

    def _open(self, owner: str | None = None) -> str:
        return f"{self.prefix}open" if owner is None else f"{self.prefix}open:{owner}"

    async def _call(self, step: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await step(keys=keys, args=args)
        except self._failures as e:
            raise StoreUnavailable(f"the Redis payment store failed: {e}") from e

    async def put(
        self,
        payment: PendingPayment,
        now: float | None = None,
        *,
        max_open_per_owner: int | None = None,
        max_open: int | None = None,
    ) -> None:
        now = time.time() if now is None else now
        keep_until_ms = math.ceil((payment.expires_unix + self.after_expiry) * 1000)
        outcome, mine, total = await self._call(
            self._put,
            [self._key(payment.payment_id), self._open(), self._open(payment.owner)],
            [
                payment.payment_id,
                payment_json(payment),
                payment.owner,
                repr(float(payment.expires_unix)),
                repr(float(now)),
                keep_until_ms,
                -1 if max_open_per_owner is None else max_open_per_owner,
                -1 if max_open is None else max_open,
            ],
        )
        if _text(outcome) != "kept":
            raise TooManyOpen(_text(outcome), int(mine), int(total))

    async def get(self, payment_id: str, now: float | None = None) -> Snapshot | None:
        # Expiry is Redis's: a key past its retention is gone, whatever `now` says.
        try:
            found = await self.client.hmget(self._key(payment_id), ["payment", "state", "result", "succeeded"])
        except self._failures as e:
            raise StoreUnavailable(f"the Redis payment store failed: {e}") from e
        return self._snapshot(found)

    @staticmethod
    def _snapshot(found: Any) -> Snapshot | None:
        if not found or found[0] is None:
            return None
        payment, state, result, succeeded = found
        result = _text(result) if result is not None else ""
        return Snapshot(
            payment=payment_from_json(payment),
            state=_text(state),
            result=json.loads(result) if result else None,
            succeeded=_text(succeeded) == "1" if succeeded is not None else False,
        )

    async def open_counts(self, owner: str, now: float | None = None) -> tuple[int, int]:
        now = time.time() if now is None else now
        mine, total = await self._call(self._open_counts, [self._open(), self._open(owner)], [repr(float(now))])
        return int(mine), int(total)

    async def claim(self, payment_id: str) -> Snapshot | None:
        token = secrets.token_hex(16)
        found = await self._call(
            self._claim,
            [self._key(payment_id), self._open()],
            [payment_id, self._open(""), token, self._keep_in_flight_ms()],
        )
        return self._snapshot(found)

    def _keep_in_flight_ms(self) -> int:
        # Running or settling: never dropped before either retention would drop it.
        return math.ceil(max(self.results, self.after_expiry) * 1000)

    async def ran(self, payment_id: str, result: dict[str, Any], succeeded: bool, now: float | None = None) -> None:
        now = time.time() if now is None else now
        await self._call(
            self._ran,
            [self._key(payment_id)],
            [json.dumps(result, separators=(",", ":"), ensure_ascii=False), int(succeeded), repr(float(now)), self._keep_in_flight_ms()],
        )

    async def finish(self, payment_id: str, result: dict[str, Any], succeeded: bool, now: float | None = None) -> None:
        now = time.time() if now is None else now
        await self._call(
            self._finish,
            [self._key(payment_id)],
            [
                json.dumps(result, separators=(",", ":"), ensure_ascii=False),
                int(succeeded),
                repr(float(now)),
                max(math.ceil(self.results * 1000), 1),
            ],
        )

    async def aclose(self) -> None:
        """Closes the connections to Redis."""
        await self.client.aclose()

