"""DYNAMIC_TOOLS with the official MCP client against a real service: a caller's
confirm tool is listed while a payment of its own is open, and the change announced."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from walleot import Mode

from conftest import session_of
from test_paid_tools import Counted, status, text

pytestmark = pytest.mark.anyio

CONFIRM = "confirm_add_payment"


async def names(client) -> set[str]:
    return {t.name for t in (await client.list_tools()).tools}


class Changes:
    """Counts tools/list_changed notifications."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, message) -> None:
        if "tools/list_changed" in repr(message) or "ToolListChanged" in type(getattr(message, "root", message)).__name__:
            self.count += 1

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(5):
            while self.count < count:
                await anyio.sleep(0.02)


async def test_a_confirm_tool_shows_only_while_its_callers_payment_is_open(service):
    server = Counted(service, mode=Mode.DYNAMIC_TOOLS)
    changes = Changes()
    async with Client(server.mcp, mode="legacy", message_handler=changes) as alice, Client(
        server.mcp, mode="legacy"
    ) as bob:
        assert alice.server_capabilities.tools.list_changed is True
        assert CONFIRM not in await names(alice)
        first = await alice.call_tool("add", {"a": 4, "b": 4})
        assert status(first) == "payment_required" and first.is_error is True
        assert "now in the tool list" in first.structured_content["nextStep"]
        await changes.wait_for(1)
        assert CONFIRM in await names(alice)
        assert CONFIRM not in await names(bob), "another caller never sees it"
        service.pay(session_of(first))
        args = {"payment_id": first.structured_content["paymentId"]}
        assert text(await alice.call_tool(CONFIRM, args)) == "8"
        await changes.wait_for(2)
        assert CONFIRM not in await names(alice)
        # The client lost that answer and asks again: the kept result, not "unknown tool".
        assert text(await alice.call_tool(CONFIRM, args)) == "8"
        assert server.runs == {"add": 1}

        # A payment cancelled at the service takes its confirm tool with it.
        second = await alice.call_tool("add", {"a": 1, "b": 1})
        assert CONFIRM in await names(alice)
        code, _ = service.request("POST", f"sessions/{session_of(second)}/cancel")
        assert code == 200
        refused = await alice.call_tool(CONFIRM, {"payment_id": second.structured_content["paymentId"]})
        assert status(refused) == "refused"
        assert CONFIRM not in await names(alice)


async def test_dynamic_tools_on_mcp_2026_07_28(service):
    server = Counted(service, mode=Mode.DYNAMIC_TOOLS)
    async with Client(server.mcp) as client:
        assert CONFIRM not in await names(client)
        first = await client.call_tool("add", {"a": 2, "b": 3})
        assert CONFIRM in await names(client)
        service.pay(session_of(first))
        done = await client.call_tool(CONFIRM, {"payment_id": first.structured_content["paymentId"]})
        assert text(done) == "5"
        assert CONFIRM not in await names(client)
