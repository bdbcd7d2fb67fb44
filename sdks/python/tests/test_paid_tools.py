"""The guarantees, tested against a real Walleot service with the official MCP client
talking to MCPServers in this process: as clients and attackers would use them."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import Context, MCPServer

from walleot import SUPPORTED_MODES, Mode, Walleot, price

from conftest import session_of

pytestmark = pytest.mark.anyio


def text(result) -> str:
    return " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def status(result) -> str | None:
    return (result.structured_content or {}).get("status")


class Counted:
    """A server with priced tools of every shape, and how often each ran."""

    def __init__(self, service, mode=Mode.TWO_STEP, before=True, **options):
        self.runs: dict[str, int] = {}
        self.mcp = MCPServer("paid-test", log_level="ERROR")
        if not before:
            self.register()
        self.walleot = Walleot(self.mcp, apiKey=service.key, mode=mode, baseUrl=service.url, **options)
        if before:
            self.register()

    def ran(self, name: str) -> None:
        self.runs[name] = self.runs.get(name, 0) + 1

    def register(self) -> None:
        mcp = self.mcp

        @mcp.tool(description="Adds two numbers.")
        @price(0.19, "USD")
        async def add(a: float, b: float) -> str:
            self.ran("add")
            await asyncio.sleep(0.05)
            total = a + b
            return str(int(total)) if total.is_integer() else repr(total)

        @mcp.tool()
        @price(0.50, "USD")
        def premium_analysis(data: str):  # sync, no return annotation
            self.ran("premium_analysis")
            return f"{len(data.split())} words"

        @price(0.29, "usd")  # the other decorator order
        @mcp.tool()
        async def with_context(n: int, ctx: Context) -> dict:
            self.ran("with_context")
            return {"double": n * 2, "request": bool(ctx.request_id)}

        @mcp.tool()
        @price(1, "USD")
        async def broken(n: int) -> str:
            self.ran("broken")
            raise RuntimeError("the tool failed")

        @mcp.tool()
        def free(x: int) -> int:
            self.ran("free")
            return x


async def required(client, tool, arguments):
    answer = await client.call_tool(tool, arguments)
    assert answer.is_error is True, text(answer)
    assert status(answer) == "payment_required", text(answer)
    return answer


async def test_tools_list_shows_prices_and_confirm_tools(service):
    for before in (True, False):  # tools registered before or after Walleot(...)
        server = Counted(service, before=before)
        async with Client(server.mcp) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert tools["add"].meta["price"] == {"amount": 0.19, "currency": "USD"}
            assert tools["premium_analysis"].meta["price"] == {"amount": 0.5, "currency": "USD"}
            assert tools["with_context"].meta["price"] == {"amount": 0.29, "currency": "USD"}
            assert "price" not in (tools["free"].meta or {})
            assert tools["add"].description == "Adds two numbers."
            confirm = tools["confirm_add_payment"]
            assert confirm.input_schema["required"] == ["payment_id"]
            assert "payment_id" not in tools["add"].input_schema["properties"]
            assert {"confirm_premium_analysis_payment", "confirm_with_context_payment"} <= set(tools)
            assert "confirm_free_payment" not in tools
            assert text(await client.call_tool("free", {"x": 4})) == "4"


async def test_two_step_pays_runs_once_and_keeps_the_result(service):
    server = Counted(service)
    for legacy in (False, True):  # MCP 2026-07-28 and the 2025 handshake
        server.runs.clear()
        async with Client(server.mcp, mode="legacy" if legacy else "auto") as client:
            first = await required(client, "add", {"a": 2, "b": 5})
            s = first.structured_content
            assert s["amount"] == 0.19 and s["amountMinor"] == 19 and s["currency"] == "USD"
            assert s["tool"] == "add" and s["expiresAt"]
            assert s["paymentId"].startswith("pay_") and len(s["paymentId"]) >= 26
            assert s["paymentId"] not in s["paymentUrl"], "the payment id is not in the link"
            assert "confirm_add_payment" in s["nextStep"]
            session = session_of(first)
            held = service.session(session)
            assert held["status"] == "pending" and held["amount"] == 19

            unpaid = await client.call_tool("confirm_add_payment", {"payment_id": s["paymentId"]})
            assert unpaid.is_error is True and status(unpaid) == "pending"
            assert server.runs == {}

            service.pay(session)
            done = await client.call_tool("confirm_add_payment", {"payment_id": s["paymentId"]})
            assert done.is_error is not True and text(done) == "7"
            assert service.session(session)["captureStatus"] == "captured"
            again = await client.call_tool("confirm_add_payment", {"payment_id": s["paymentId"]})
            assert text(again) == "7", "a repeated confirm gets the kept result"
            assert server.runs == {"add": 1}


async def test_every_tool_shape_runs_once_paid(service):
    server = Counted(service)
    async with Client(server.mcp) as client:
        for tool, arguments, expected in (
            ("premium_analysis", {"data": "a b c"}, "3 words"),
            ("with_context", {"n": 21}, '"double": 42'),
        ):
            first = await required(client, tool, arguments)
            service.pay(session_of(first))
            done = await client.call_tool(f"confirm_{tool}_payment", {"payment_id": first.structured_content["paymentId"]})
            assert done.is_error is not True, text(done)
            assert expected in text(done)
        assert server.runs == {"premium_analysis": 1, "with_context": 1}


async def test_a_payment_pays_only_for_its_own_tool_and_arguments(service):
    server = Counted(service)
    async with Client(server.mcp) as client:
        cheap = await required(client, "add", {"a": 1, "b": 1})
        service.pay(session_of(cheap))
        payment_id = cheap.structured_content["paymentId"]
        # A cheap payment for an expensive tool.
        stolen = await client.call_tool("confirm_premium_analysis_payment", {"payment_id": payment_id})
        assert stolen.is_error is True and status(stolen) == "refused"
        # The session id from the checkout link, which whoever saw the link knows.
        session = session_of(cheap)
        for guess in (session, "pay_" + session[5:], "", 42):
            taken = await client.call_tool("confirm_add_payment", {"payment_id": guess})
            assert taken.is_error is True and status(taken) == "refused", guess
        assert server.runs == {}
        # The payment still pays for what it was made for.
        assert text(await client.call_tool("confirm_add_payment", {"payment_id": payment_id})) == "2"


async def test_resubmit_binds_the_payment_to_the_arguments(service):
    server = Counted(service, mode=Mode.RESUBMIT)
    async with Client(server.mcp) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "payment_id" in tools["add"].input_schema["properties"]
        assert not any(name.startswith("confirm_") for name in tools)
        first = await required(client, "add", {"a": 2, "b": 5, "payment_id": None})  # null is absent
        s = first.structured_content
        assert "again with the same arguments" in s["nextStep"]
        payment_id, session = s["paymentId"], session_of(first)
        unpaid = await client.call_tool("add", {"a": 2, "b": 5, "payment_id": payment_id})
        assert status(unpaid) == "pending" and unpaid.is_error is True
        service.pay(session)
        other = await client.call_tool("add", {"a": 100, "b": 100, "payment_id": payment_id})
        assert status(other) == "refused" and "other arguments" in text(other)
        expensive = await client.call_tool("premium_analysis", {"data": "x", "payment_id": payment_id})
        assert status(expensive) == "refused"
        link = await client.call_tool("add", {"a": 2, "b": 5, "payment_id": session})
        assert status(link) == "refused"
        assert server.runs == {}
        done = await client.call_tool("add", {"b": 5, "a": 2, "payment_id": payment_id})
        assert text(done) == "7" and done.is_error is not True
        reused = await client.call_tool("add", {"a": 2, "b": 5, "payment_id": payment_id})
        assert text(reused) == "7"
        assert server.runs == {"add": 1}, "reuse hands out the kept result, never a second run"
        assert service.session(session)["captureStatus"] == "captured"


async def test_ten_concurrent_confirms_run_the_tool_once(service):
    server = Counted(service)
    async with Client(server.mcp) as client:
        first = await required(client, "add", {"a": 1, "b": 2})
        service.pay(session_of(first))
        payment_id = first.structured_content["paymentId"]
        answers = [None] * 10

        async def confirm(i):
            answers[i] = await client.call_tool("confirm_add_payment", {"payment_id": payment_id})

        async with anyio.create_task_group() as group:
            for i in range(10):
                group.start_soon(confirm, i)
        assert [text(a) for a in answers] == ["3"] * 10
        assert server.runs == {"add": 1}


async def test_a_failing_tool_releases_the_funds(service):
    server = Counted(service)
    async with Client(server.mcp) as client:
        first = await required(client, "broken", {"n": 1})
        session = session_of(first)
        service.pay(session)
        assert service.session(session)["captureStatus"] == "held"
        failed = await client.call_tool("confirm_broken_payment", {"payment_id": first.structured_content["paymentId"]})
        assert failed.is_error is True
        released = service.session(session)
        assert released["captureStatus"] == "released" and released["status"] == "cancelled"
        again = await client.call_tool("confirm_broken_payment", {"payment_id": first.structured_content["paymentId"]})
        assert again.is_error is True and server.runs == {"broken": 1}


async def test_arguments_are_checked_before_any_money_is_asked_for(service):
    server = Counted(service)
    async with Client(server.mcp) as client:
        before = service.newest_session()
        for bad in ({"a": "not a number", "b": 1}, {"a": 1}, {"a": [1], "b": {}}):
            refused = await client.call_tool("add", bad)
            assert refused.is_error is True, bad
            assert "nothing was charged" in text(refused), text(refused)
            assert "Error executing tool add" in text(refused)
        assert service.newest_session() == before, "no session was created"
        assert server.runs == {}
        await required(client, "add", {"a": 1, "b": 2})


async def test_an_unknown_payment_id_says_what_became_of_the_money(service):
    server = Counted(service)
    async with Client(server.mcp) as client:
        unknown = await client.call_tool("confirm_add_payment", {"payment_id": "pay_forgotten_by_a_restart"})
        assert unknown.is_error is True and status(unknown) == "refused"
        assert "Nothing is charged" in text(unknown) and "hold deadline" in text(unknown)


async def test_one_caller_cannot_open_payments_without_end(service):
    server = Counted(service, max_open_per_caller=3)
    async with Client(server.mcp, mode="legacy") as greedy:
        statuses = [status(await greedy.call_tool("add", {"a": a, "b": 1})) for a in range(5)]
        assert statuses == ["payment_required"] * 3 + ["refused"] * 2
        before = service.newest_session()
        refused = await greedy.call_tool("add", {"a": 9, "b": 1})
        assert "unpaid payments are open" in text(refused) and refused.is_error is True
        assert service.newest_session() == before, "refusals never reach the service"
    async with Client(server.mcp, mode="legacy") as other:
        await required(other, "add", {"a": 1, "b": 1})
    server = Counted(service, max_open=2)
    async with Client(server.mcp, mode="legacy") as client:
        statuses = [status(await client.call_tool("add", {"a": a, "b": 1})) for a in range(3)]
        assert statuses == ["payment_required", "payment_required", "refused"]


async def test_a_payment_can_be_bound_to_a_subject(service):
    server = Counted(service, identify=lambda ctx: ((ctx.params or {}).get("_meta") or {}).get("test/user"))
    async with Client(server.mcp) as client:
        first = await client.call_tool("add", {"a": 1, "b": 1}, meta={"test/user": "alice"})
        assert status(first) == "payment_required"
        service.pay(session_of(first))
        args = {"payment_id": first.structured_content["paymentId"]}
        mallory = await client.call_tool("confirm_add_payment", args, meta={"test/user": "mallory"})
        assert status(mallory) == "refused"
        alice = await client.call_tool("confirm_add_payment", args, meta={"test/user": "alice"})
        assert text(alice) == "2"


async def test_a_service_that_is_down_is_a_clear_tool_error(service):
    mcp = MCPServer("down", log_level="ERROR")
    Walleot(mcp, apiKey=service.key, baseUrl="http://127.0.0.1:9", timeout=3)

    @mcp.tool()
    @price(0.19, "USD")
    def add(a: float, b: float) -> float:
        return a + b

    async with Client(mcp) as client:
        failed = await client.call_tool("add", {"a": 1, "b": 1})
        said = text(failed)
        assert failed.is_error is True and status(failed) == "error"
        assert "could not be reached" in said, said
        assert "127.0.0.1:9" not in said


async def test_a_rate_limited_service_is_reported_with_its_wait(limited):
    server = Counted(limited)
    limited.exhaust_posts()
    async with Client(server.mcp) as client:
        answer = await client.call_tool("add", {"a": 1, "b": 1})
        said = text(answer)
        assert answer.is_error is True and status(answer) == "rate_limited"
        assert "rate limited by the payment service, retry in" in said, said
        assert "could not be reached" not in said
        assert 1 <= answer.structured_content["retryAfter"] <= 60


async def test_a_result_is_handed_out_only_after_its_capture(limited):
    server = Counted(limited)
    async with Client(server.mcp) as client:
        first = await required(client, "add", {"a": 1, "b": 2})
        session, payment_id = session_of(first), first.structured_content["paymentId"]
        limited.pay(session)
        limited.exhaust_posts()
        for _ in range(2):
            waiting = await client.call_tool("confirm_add_payment", {"payment_id": payment_id})
            assert status(waiting) == "settling", text(waiting)
            assert waiting.is_error is True and text(waiting) != "3"
            assert waiting.structured_content["retryAfter"] >= 1
            assert limited.session(session)["captureStatus"] == "held"
        assert server.runs == {"add": 1}
        limited.next_window()
        done = await client.call_tool("confirm_add_payment", {"payment_id": payment_id})
        assert text(done) == "3" and done.is_error is not True
        assert limited.session(session)["captureStatus"] == "captured"
        assert text(await client.call_tool("confirm_add_payment", {"payment_id": payment_id})) == "3"
        assert server.runs == {"add": 1}


def test_every_mode_of_the_reference_is_supported():
    for mode in Mode:
        mcp = MCPServer("modes")
        before = len(mcp.middleware)
        Walleot(mcp, apiKey="sk_test_x", mode=mode.name)  # "TWO_STEP", "DYNAMIC_TOOLS", ...
        assert len(mcp.middleware) == before + 1
    assert set(SUPPORTED_MODES) == set(Mode)
    with pytest.raises(ValueError, match="unknown mode"):
        Walleot(MCPServer("x"), apiKey="sk_test_x", mode="teleport")


def test_construction_needs_a_key_and_an_mcp_server(monkeypatch):
    monkeypatch.delenv("WALLEOT_API_KEY", raising=False)
    with pytest.raises(ValueError, match="WALLEOT_API_KEY"):
        Walleot(MCPServer("x"))
    with pytest.raises(TypeError, match="MCPServer"):
        Walleot(object(), apiKey="sk_test_x")
    monkeypatch.setenv("WALLEOT_API_KEY", "sk_test_env")
    monkeypatch.delenv("WALLEOT_API_URL", raising=False)
    walleot = Walleot(MCPServer("y"))
    assert walleot.client.base == "http://127.0.0.1:8080/v1/"
    monkeypatch.setenv("WALLEOT_API_URL", "https://pay.example/v1")
    assert Walleot(MCPServer("z")).client.base == "https://pay.example/v1/"


async def test_a_service_that_never_answers_times_out_instead_of_hanging(service):
    import socket
    import time as clock

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections, never answers
    try:
        mcp = MCPServer("silent", log_level="ERROR")
        Walleot(mcp, apiKey=service.key, baseUrl=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1)

        @mcp.tool()
        @price(0.19, "USD")
        def add(a: float, b: float) -> float:
            return a + b

        async with Client(mcp) as client:
            started = clock.monotonic()
            failed = await client.call_tool("add", {"a": 1, "b": 1})
            assert clock.monotonic() - started < 10
            assert failed.is_error is True and "could not be reached" in text(failed), text(failed)
    finally:
        silent.close()


async def test_sessions_are_manual_capture_with_a_30_minute_link(service):
    from datetime import datetime

    server = Counted(service)
    async with Client(server.mcp) as client:
        first = await required(client, "add", {"a": 1, "b": 1})
        session = service.session(session_of(first))
        created = datetime.fromisoformat(session["createdAt"].replace("Z", "+00:00"))
        expires = datetime.fromisoformat(session["expiresAt"].replace("Z", "+00:00"))
        assert abs((expires - created).total_seconds() - 1800) < 5
        assert session["description"] == "Tool call: add"
        service.pay(session_of(first))
        assert service.session(session_of(first))["captureStatus"] == "held"


# In process, only the handshake era carries progress tokens (the 2026-07-28 in-process
# dispatcher calls the callback directly); test_example covers 2026-07-28 over HTTP.
@pytest.mark.parametrize("era", ["legacy"])
async def test_progress_streams_the_link_and_sees_the_payment_at_once(service, era):
    import re
    import time as clock

    server = Counted(service, mode=Mode.PROGRESS, poll_every=10)
    paid_at: list[float] = []

    async def on_progress(progress, total, message):
        if message and "/checkout/" in message and not paid_at:
            service.pay(re.search(r"/checkout/(sess_[A-Za-z0-9]+)", message).group(1))
            paid_at.append(clock.monotonic())

    async with Client(server.mcp, mode=era) as client:
        done = await client.call_tool("add", {"a": 1, "b": 1}, progress_callback=on_progress)
        answered = clock.monotonic()
        assert text(done) == "2" and done.is_error is not True, text(done)
        assert paid_at and answered - paid_at[0] < 1.5, "the long poll sees the payment at once"
        # Without a progress token the call falls back to two steps.
        plain = await client.call_tool("add", {"a": 2, "b": 2})
        assert status(plain) == "payment_required" and "confirm_add_payment" in plain.structured_content["nextStep"]
    assert server.runs == {"add": 1}
