"""RedisStore against a real Redis (WALLEOT_REDIS_URL): the state machine, retention by
key expiry, and the caps and claims that hold across store instances, as they would
across the processes of one server."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import redis

from walleot import RedisStore, StoreUnavailable, TooManyOpen
from walleot._store import AWAITING, DONE, RAN, RUNNING

from test_store import payment

pytestmark = pytest.mark.anyio


@pytest.fixture
def keys(redis_url):
    """A plain client to look at what the store wrote."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def closed_port() -> int:
    """A local port nothing listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_a_payment_is_claimed_once_and_its_result_kept(redis_url, redis_prefix):
    store = RedisStore(redis_url, prefix=redis_prefix)
    try:
        later = time.time() + 600
        p = payment("p1", expires=later)
        p.subject = "alice"
        await store.put(p)
        found = await store.get("p1")
        assert found.state == AWAITING and found.payment == p and found.result is None
        assert (await store.claim("p1")).state == AWAITING  # this caller runs the tool
        assert (await store.claim("p1")).state == RUNNING  # another waits
        await store.ran("p1", {"content": [{"type": "text", "text": "3"}]}, True)
        ran = await store.claim("p1")
        assert ran.state == RAN and ran.succeeded and ran.result["content"][0]["text"] == "3"
        await store.finish("p1", {"content": [{"type": "text", "text": "3"}]}, True)
        await store.finish("p1", {"content": [], "isError": True}, False)  # done once: ignored
        found = await store.claim("p1")
        assert found.state == DONE and found.succeeded and found.result["content"][0]["text"] == "3"
        assert await store.claim("unknown") is None and await store.get("unknown") is None
        # A payment put again (a retried put) is not reset.
        await store.put(p)
        assert (await store.get("p1")).state == DONE
    finally:
        await store.aclose()


async def test_concurrent_claims_from_two_stores_let_exactly_one_caller_run(redis_url, redis_prefix):
    one, two = RedisStore(redis_url, prefix=redis_prefix), RedisStore(redis_url, prefix=redis_prefix)
    try:
        await one.put(payment("p1", expires=time.time() + 600))
        claims = await asyncio.gather(*(s.claim("p1") for s in [one, two] * 10))
        assert [c.state for c in claims].count(AWAITING) == 1
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_retried_claim_is_answered_as_its_own(redis_url, redis_prefix):
    # A claim whose reply was lost is sent again: the caller that made it still runs the tool.
    store = RedisStore(redis_url, prefix=redis_prefix)
    try:
        await store.put(payment("p1", expires=time.time() + 600))
        keys, args = [store._key("p1"), store._open()], ["p1", store._open(""), "token-a", 60_000]
        first = await store._call(store._claim, keys, args)
        again = await store._call(store._claim, keys, args)
        other = await store._call(store._claim, keys, ["p1", store._open(""), "token-b", 60_000])
        assert [store._snapshot(f).state for f in (first, again, other)] == [AWAITING, AWAITING, RUNNING]
    finally:
        await store.aclose()


async def test_open_counts_go_by_owner_and_open_links_without_a_scan(redis_url, redis_prefix, keys):
    store = RedisStore(redis_url, prefix=redis_prefix)
    try:
        now = time.time()
        await store.put(payment("p1", "alice", expires=now + 100))
        await store.put(payment("p2", "alice", expires=now + 100))
        await store.put(payment("p3", "bob", expires=now + 100))
        await store.put(payment("p4", "alice", expires=now - 1))  # its link expired
        assert await store.open_counts("alice") == (2, 3)
        await store.claim("p1")
        assert await store.open_counts("alice") == (1, 2)  # paid and running: no longer open
        assert await store.open_counts("carol") == (0, 2)
        # One sorted set per owner and one for all, scored by link expiry.
        assert keys.zrange(redis_prefix + "open:alice", 0, -1) == ["p2"]
        assert sorted(keys.zrange(redis_prefix + "open", 0, -1)) == ["p2", "p3"]
        assert abs(keys.zscore(redis_prefix + "open:alice", "p2") - (now + 100)) < 0.01
    finally:
        await store.aclose()


async def test_retention_is_by_key_expiry(redis_url, redis_prefix, keys):
    store = RedisStore(redis_url, prefix=redis_prefix, after_expiry_seconds=3600, results_seconds=7200)
    try:
        now = time.time()
        await store.put(payment("p1", "alice", expires=now + 100))
        # Unpaid: kept until a retention after its link expires; the owner's set until the link does.
        assert abs(keys.pttl(redis_prefix + "pay:p1") - 3700_000) < 5_000
        assert abs(keys.pttl(redis_prefix + "open:alice") - 100_000) < 5_000
        assert abs(keys.pttl(redis_prefix + "open") - 100_000) < 5_000
        # Running or settling: at least the longer retention from its last step.
        await store.claim("p1")
        assert abs(keys.pttl(redis_prefix + "pay:p1") - 7200_000) < 5_000
        await store.ran("p1", {}, True)
        assert abs(keys.pttl(redis_prefix + "pay:p1") - 7200_000) < 5_000
        # Done: the results retention from its settlement.
        await store.finish("p1", {}, True)
        assert abs(keys.pttl(redis_prefix + "pay:p1") - 7200_000) < 5_000
    finally:
        await store.aclose()


async def test_unpaid_payments_and_old_results_are_dropped_when_due(redis_url, redis_prefix):
    store = RedisStore(redis_url, prefix=redis_prefix, after_expiry_seconds=1, results_seconds=1)
    try:
        now = time.time()
        await store.put(payment("unpaid", expires=now - 0.5))  # kept for about half a second more
        await store.put(payment("paid", expires=now + 600))
        await store.claim("paid")
        await store.ran("paid", {}, True)
        await store.finish("paid", {}, True)  # kept for a second
        assert await store.get("unpaid") is not None and await store.get("paid") is not None
        await asyncio.sleep(0.8)
        assert await store.get("unpaid") is None
        assert await store.get("paid") is not None
        await asyncio.sleep(0.5)
        assert await store.get("paid") is None
        # A payment already past its retention is not kept at all.
        await store.put(payment("stale", expires=now - 5))
        assert await store.get("stale") is None
    finally:
        await store.aclose()


async def test_caps_hold_across_two_stores(redis_url, redis_prefix):
    one, two = RedisStore(redis_url, prefix=redis_prefix), RedisStore(redis_url, prefix=redis_prefix)
    try:
        later = time.time() + 600
        caps = {"max_open_per_owner": 3, "max_open": 5}

        async def put(store, pid, owner):
            try:
                await store.put(payment(pid, owner, expires=later), **caps)
                return "kept"
            except TooManyOpen as refused:
                return refused.scope

        # Ten at once for one owner, through both stores: three are kept.
        outcomes = await asyncio.gather(*(put([one, two][i % 2], f"a{i}", "alice") for i in range(10)))
        assert outcomes.count("kept") == 3 and outcomes.count("owner") == 7
        assert await one.open_counts("alice") == (3, 3) == await two.open_counts("alice")
        # The server-wide cap: two more for others, then none.
        outcomes = await asyncio.gather(*(put([one, two][i % 2], f"b{i}", f"caller{i}") for i in range(6)))
        assert outcomes.count("kept") == 2 and outcomes.count("total") == 4
        # A claimed payment makes room.
        kept = [f"a{i}" for i in range(10) if await one.get(f"a{i}") is not None]
        assert (await two.claim(kept[0])).state == AWAITING
        assert await put(one, "a-next", "alice") == "kept"
        assert await put(two, "a-more", "alice") == "owner"
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_redis_that_is_down_fails_every_step_quickly():
    store = RedisStore(f"redis://127.0.0.1:{closed_port()}/0", prefix="walleot-test:down:", timeout=2)
    try:
        started = time.monotonic()
        steps = [
            store.put(payment("p1", expires=time.time() + 600)),
            store.get("p1"),
            store.open_counts("alice"),
            store.claim("p1"),
            store.ran("p1", {}, True),
            store.finish("p1", {}, True),
        ]
        for step in steps:
            with pytest.raises(StoreUnavailable, match="Redis payment store failed"):
                await step
        assert time.monotonic() - started < 5
    finally:
        await store.aclose()
