"""Stateless streamable HTTP (no MCP session, no server requests) with the official
MCP client against a real service: the payment id is the right to confirm,
elicitation without a handshake falls back to two steps, callers are told apart by
their credential, and callers without one always see confirm tools."""

from __future__ import annotations

import asyncio
import socket
from contextlib import asynccontextmanager

import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

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


@asynccontextmanager
async def with_credential(url: str, credential: str):
    """Streamable HTTP to `url`, every request carrying `Authorization: credential`."""
    async with create_mcp_http_client(headers={"Authorization": credential}) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams


@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_without_a_session_callers_are_told_apart_by_their_credential(service, era):
    # No `identify`: one credential is one caller for the cap and the confirm tools.
    server = Counted(service, mode=Mode.DYNAMIC_TOOLS, max_open_per_caller=2)
    async with Stateless(server) as url:
        alice_says, bob_says = with_credential(url, "Bearer alice"), with_credential(url, "Bearer bob")
        async with Client(alice_says, mode=era) as alice, Client(bob_says, mode=era) as bob:
            assert "confirm_add_payment" not in {t.name for t in (await alice.list_tools()).tools}
            first = await alice.call_tool("add", {"a": 1, "b": 1})
            assert status(first) == "payment_required", text(first)
            assert "confirm_add_payment" in {t.name for t in (await alice.list_tools()).tools}
            assert "confirm_add_payment" not in {t.name for t in (await bob.list_tools()).tools}
            await alice.call_tool("add", {"a": 2, "b": 1})
            refused = await alice.call_tool("add", {"a": 3, "b": 1})
            assert status(refused) == "refused" and "unpaid payments are open" in text(refused), text(refused)
            fair = await bob.call_tool("add", {"a": 1, "b": 1})
            assert status(fair) == "payment_required", text(fair)
            # The payment id, not the credential, is the right to confirm.
            service.pay(session_of(first))
            done = await bob.call_tool("confirm_add_payment", {"payment_id": first.structured_content["paymentId"]})
            assert text(done) == "2"
    assert server.runs == {"add": 1}
