"""Arguments hashing and the in-memory store of pending payments."""

import pytest

from walleot import MemoryStore, Price, TooManyOpen, arguments_hash
from walleot._store import AWAITING, DONE, RAN, RUNNING, PendingPayment, StoreFull


def test_the_arguments_hash_is_canonical():
    assert arguments_hash({"a": 1, "b": {"y": [1, {"q": 1, "p": 2}], "x": "é"}}) == arguments_hash(
        {"b": {"x": "é", "y": [1, {"p": 2, "q": 1}]}, "a": 1}
    )
    assert arguments_hash({"a": 1, "b": 2}) != arguments_hash({"a": 2, "b": 1})
    assert arguments_hash({"a": [1, 2]}) != arguments_hash({"a": [2, 1]})
    assert arguments_hash({"a": "1"}) != arguments_hash({"a": 1})
    # SHA-256 of the sorted, compact JSON text, as walleot-mcp computes it.
    import hashlib

    assert arguments_hash({"b": 2, "a": 1}) == hashlib.sha256(b'{"a":1,"b":2}').hexdigest()


def payment(pid, owner="alice", expires=1_000.0, data="x"):
    return PendingPayment(
        payment_id=pid,
        session_id="sess_" + pid,
        payment_url="http://pay/" + pid,
        tool="add",
        arguments={"data": data},
        arguments_hash=arguments_hash({"data": data}),
        price=Price(19, "USD"),
        subject=None,
        owner=owner,
        expires_at="",
        expires_unix=expires,
    )


@pytest.mark.anyio
async def test_a_payment_is_claimed_once_and_its_result_kept():
    store = MemoryStore()
    await store.put(payment("p1"), now=0)
    assert (await store.claim("p1")).state == AWAITING  # this caller runs the tool
    assert (await store.claim("p1")).state == RUNNING  # another waits
    await store.ran("p1", {"content": []}, True, now=1)
    assert (await store.claim("p1")).state == RAN  # settle, then hand out
    await store.finish("p1", {"content": [{"type": "text", "text": "3"}]}, True, now=2)
    found = await store.claim("p1")
    assert found.state == DONE and found.result["content"][0]["text"] == "3"
    assert await store.claim("unknown") is None


@pytest.mark.anyio
async def test_open_counts_go_by_owner_and_open_links():
    store = MemoryStore()
    await store.put(payment("p1", "alice", expires=100), now=0)
    await store.put(payment("p2", "alice", expires=100), now=0)
    await store.put(payment("p3", "bob", expires=100), now=0)
    await store.put(payment("p4", "alice", expires=10), now=0)
    assert await store.open_counts("alice", now=50) == (2, 3)  # p4's link expired
    await store.claim("p1")
    assert await store.open_counts("alice", now=50) == (1, 2)  # paid and running: no longer open


@pytest.mark.anyio
async def test_retention_drops_unpaid_payments_and_old_results():
    store = MemoryStore(after_expiry_seconds=100, results_seconds=50)
    await store.put(payment("p1", expires=10), now=0)
    await store.put(payment("p2", expires=10), now=0)
    await store.claim("p2")
    await store.ran("p2", {}, True, now=5)
    await store.finish("p2", {}, True, now=5)
    assert await store.get("p1", now=109) is not None
    assert await store.get("p1", now=110) is None
    assert await store.get("p2", now=54) is not None
    assert await store.get("p2", now=55) is None


@pytest.mark.anyio
async def test_the_store_keeps_within_its_budget():
    store = MemoryStore(budget_bytes=12_000)
    big = "w" * 3_000
    for i in range(3):
        await store.put(payment(f"p{i}", expires=100, data=big), now=0)
    with pytest.raises(StoreFull):
        await store.put(payment("p3", expires=100, data=big), now=0)
    # Once the links expired, new payments take the room of the old.
    await store.put(payment("p4", expires=500, data=big), now=200)
    assert await store.get("p4", now=200) is not None
    # A run in flight is never dropped.
    store = MemoryStore(budget_bytes=10_000)
    await store.put(payment("run", expires=1, data=big), now=0)
    await store.claim("run")
    for i in range(5):
        try:
            await store.put(payment(f"q{i}", expires=1, data=big), now=10)
        except StoreFull:
            pass
    assert (await store.get("run", now=10)).state == RUNNING


@pytest.mark.anyio
async def test_a_put_keeps_within_the_caps_on_open_payments():
    store = MemoryStore()
    caps = {"max_open_per_owner": 2, "max_open": 3}
    for i in range(2):
        await store.put(payment(f"a{i}", "alice", expires=100), now=0, **caps)
    with pytest.raises(TooManyOpen) as refused:
        await store.put(payment("a2", "alice", expires=100), now=0, **caps)
    assert (refused.value.scope, refused.value.mine, refused.value.total) == ("owner", 2, 2)
    await store.put(payment("b0", "bob", expires=100), now=0, **caps)
    with pytest.raises(TooManyOpen) as refused:
        await store.put(payment("b1", "bob", expires=100), now=0, **caps)
    assert refused.value.scope == "total"
    assert await store.get("a2", now=0) is None and await store.get("b1", now=0) is None
    # A claimed payment, or one whose link expired, no longer takes a place.
    await store.claim("a0")
    await store.put(payment("a3", "alice", expires=100), now=0, **caps)
    await store.put(payment("a4", "alice", expires=300), now=150, **caps)


def test_a_confirm_tool_shows_while_a_payment_of_its_caller_is_open():
    from walleot._core import OpenConfirms

    confirms = OpenConfirms()
    assert confirms.open("alice", "add", "p1", 100, 0)
    assert not confirms.open("alice", "add", "p2", 100, 0), "already shown"
    assert not confirms.is_open("bob", "add", 0)
    assert not confirms.close("alice", "add", "p1", 0), "p2 is still open"
    assert confirms.close("alice", "add", "p2", 0)
    assert not confirms.is_open("alice", "add", 0)
    # Expired payments close by themselves, and nothing is kept for them.
    confirms.open("alice", "add", "p3", 100, 0)
    assert confirms.is_open("alice", "add", 99)
    assert not confirms.is_open("alice", "add", 100)
    assert len(confirms) == 0


def test_payment_ids_are_long_random_secrets():
    from walleot._core import new_payment_id

    ids = {new_payment_id() for _ in range(1000)}
    assert len(ids) == 1000
    for payment_id in list(ids)[:10]:
        assert payment_id.startswith("pay_") and len(payment_id) == 4 + 32  # 192 bits, base64url
