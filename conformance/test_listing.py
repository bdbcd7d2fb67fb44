"""What a client sees before it pays: the negotiated MCP revision, each price in the
tool's `_meta`, and the confirm tools the mode offers (DYNAMIC_TOOLS: only while a
payment of the caller's own is open)."""

from __future__ import annotations

import pytest

from support import ADD_PRICE, ANALYSIS_PRICE, FRAGILE_PRICE, explain, payment_id_of, session_of, status, text

pytestmark = pytest.mark.anyio

CONFIRM = "confirm_add_payment"


async def listed(client) -> dict:
    return {tool.name: tool for tool in (await client.list_tools()).tools}


@pytest.mark.needs_2026
@pytest.mark.modes("two-step")
async def test_the_official_client_gets_an_mcp_2026_07_28_session(server, connect):
    async with connect() as client:
        assert client.protocol_version == "2026-07-28"


async def test_tools_list_shows_each_price_in_the_tools_meta(server, connect):
    async with connect() as client:
        tools = await listed(client)
    assert {"ping", "add", "premium_analysis"} <= set(tools), sorted(tools)
    assert (tools["add"].meta or {}).get("price") == ADD_PRICE
    assert (tools["premium_analysis"].meta or {}).get("price") == ANALYSIS_PRICE
    assert "price" not in (tools["ping"].meta or {})
    if "fragile_report" in tools:
        assert (tools["fragile_report"].meta or {}).get("price") == FRAGILE_PRICE
    assert tools["add"].description == "Adds two numbers.", "descriptions stay as written"


@pytest.mark.modes("two-step", "resubmit", "elicitation", "progress", "auto")
async def test_the_confirm_tools_are_listed_as_the_mode_says(server, connect):
    async with connect() as client:
        tools = await listed(client)
    properties = tools["add"].input_schema.get("properties", {})
    if server.mode == "resubmit":
        assert not [name for name in tools if name.startswith("confirm_")], sorted(tools)
        assert "payment_id" in properties, "RESUBMIT adds payment_id to the priced tool"
        return
    assert "payment_id" not in properties
    for confirm in (CONFIRM, "confirm_premium_analysis_payment"):
        assert confirm in tools, sorted(tools)
        assert tools[confirm].input_schema.get("required") == ["payment_id"]
    assert "confirm_ping_payment" not in tools


@pytest.mark.modes("dynamic-tools")
async def test_dynamic_tools_list_the_confirm_tool_only_while_its_payment_is_open(server, service):
    async with server.client() as owner:
        assert CONFIRM not in await listed(owner)
        first = await owner.call_tool("add", {"a": 4, "b": 4})
        assert status(first) == "payment_required", explain(first)
        assert CONFIRM in await listed(owner)
        if server.target.transport != "stdio":  # over stdio another caller is another process
            async with server.client() as other:
                assert CONFIRM not in await listed(other), "another caller never sees it"
        service.pay(session_of(first))
        done = await owner.call_tool(CONFIRM, {"payment_id": payment_id_of(first)})
        assert text(done) == "8", explain(done)
        assert CONFIRM not in await listed(owner), "gone once the result is handed out"
        # A client that lost the answer asks again: the kept result, not "unknown tool".
        again = await owner.call_tool(CONFIRM, {"payment_id": payment_id_of(first)})
        assert text(again) == "8", explain(again)

        # A payment cancelled at the service takes its confirm tool with it.
        second = await owner.call_tool("add", {"a": 1, "b": 1})
        assert CONFIRM in await listed(owner)
        code, body = service.request("POST", f"sessions/{session_of(second)}/cancel")
        assert code == 200, body
        refused = await owner.call_tool(CONFIRM, {"payment_id": payment_id_of(second)})
        assert refused.is_error is True and status(refused) == "refused", explain(refused)
        assert CONFIRM not in await listed(owner)


@pytest.mark.modes("dynamic-tools")
@pytest.mark.transports("stateless")
async def test_dynamic_tools_list_every_confirm_tool_to_a_caller_without_a_credential(server, service):
    # Without a session or a credential callers cannot be told apart (documented): what
    # such a caller sees never depends on another caller's payments.
    async with server.client(anonymous=True) as first, server.client(anonymous=True) as second:
        before = await listed(second)
        assert CONFIRM in before
        opened = await first.call_tool("add", {"a": 2, "b": 2})
        assert status(opened) == "payment_required", explain(opened)
        assert sorted(await listed(second)) == sorted(before)
