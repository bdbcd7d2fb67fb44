"""Stateless streamable HTTP (no MCP session, no server requests) with the official
MCP client against a real service: the payment id is the right to confirm,
elicitation without a handshake falls back to two steps, and anonymous callers always see confirm tools."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvicorn
from mcp import Client

from walleot import Mode

from conftest import session_of
from test_paid_tools import Counted, status, text

pytestmark = pytest.mark.anyio


class Stateless:
    """A Counted server over stateless streamable HTTP, in this event loop."""

    def __init__(self, server: Counted) -> None:
        self.server = server

    async def __aenter__(self) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        app = self.server.mcp.streamable_http_app(stateless_http=True, host="127.0.0.1")
        self.uvicorn = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.task = asyncio.create_task(self.uvicorn.serve(sockets=[listener]))
        while not self.uvicorn.started:
            await asyncio.sleep(0.02)
        return f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"

    async def __aexit__(self, *exc) -> None:
        self.uvicorn.should_exit = True
        await self.task


@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_the_payment_id_not_the_link_is_the_right_to_confirm(service, era):
    server = Counted(service)
    async with Stateless(server) as url:
        async with Client(url, mode=era) as alice:
            first = await alice.call_tool("add", {"a": 5, "b": 5})
            assert status(first) == "payment_required"
        payment_id, session = first.structured_content["paymentId"], session_of(first)
        service.pay(session)
        async with Client(url, mode=era) as mallory:
            for guess in (session, "pay_" + session[5:]):
                stolen = await mallory.call_tool("confirm_add_payment", {"payment_id": guess})
                assert status(stolen) == "refused"
        assert server.runs == {}
        # A one-shot client that comes back later holds the payment id: it confirms.
        async with Client(url, mode=era) as again:
            done = await again.call_tool("confirm_add_payment", {"payment_id": payment_id})
            assert text(done) == "10"
    assert server.runs == {"add": 1}


async def test_elicitation_on_stateless_http_falls_back_to_two_steps(service):
    # A stateless request carries no handshake, so no declared elicitation: two steps.
    from test_elicitation import paying

    server = Counted(service, mode=Mode.ELICITATION)
    async with Stateless(server) as url:
        async with Client(url, mode="legacy", elicitation_callback=paying(service)) as client:
            first = await client.call_tool("add", {"a": 1, "b": 1})
            assert status(first) == "payment_required" and first.is_error is True, text(first)
            service.pay(session_of(first))
            done = await client.call_tool("confirm_add_payment", {"payment_id": first.structured_content["paymentId"]})
            assert text(done) == "2"
    assert server.runs == {"add": 1}


async def test_dynamic_tools_show_anonymous_callers_every_confirm_tool(service):
    server = Counted(service, mode=Mode.DYNAMIC_TOOLS)
    async with Stateless(server) as url:
        async with Client(url, mode="legacy") as first, Client(url, mode="legacy") as second:
            before = {t.name for t in (await second.list_tools()).tools}
            assert "confirm_add_payment" in before, "callers who cannot be told apart always see it"
            await first.call_tool("add", {"a": 1, "b": 1})
            assert {t.name for t in (await second.list_tools()).tools} == before
