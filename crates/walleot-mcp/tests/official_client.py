"""Drives a paid MCP server with the official Python MCP client (PyPI `mcp`), as an agent
would, and pays as a payer would through the Walleot service's test helper.

    python official_client.py MCP_URL SERVICE_URL TEST_KEY MODE

Prints one JSON object: what each step answered. The Rust test that runs it asserts.
"""

import asyncio
import json
import re
import sys
import urllib.request

from mcp import Client
import mcp_types as types

MCP_URL, SERVICE_URL, KEY, MODE = sys.argv[1:5]


def pay(text: str) -> str:
    """Pays the session a checkout link in `text` names, through the test helper."""
    session = re.search(r"/checkout/(sess_[A-Za-z0-9]+)", text).group(1)
    request = urllib.request.Request(
        f"{SERVICE_URL}/v1/test_helpers/sessions/{session}/pay",
        method="POST",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 200
    return session


def shown(result: types.CallToolResult) -> dict:
    text = " ".join(c.text for c in result.content if isinstance(c, types.TextContent))
    return {
        "isError": result.is_error,
        "text": text,
        "structured": result.structured_content,
        "meta": result.meta,
    }


async def on_elicitation(context, params) -> types.ElicitResult:
    pay(params.url if isinstance(params, types.ElicitRequestURLParams) else params.message)
    return types.ElicitResult(action="accept", content={"paid": True})


async def main() -> None:
    report: dict = {"mode": MODE}
    paid_once = False

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        nonlocal paid_once
        if message and "/checkout/" in message and not paid_once:
            paid_once = True
            pay(message)

    elicits = MODE in ("elicitation", "auto")
    async with Client(MCP_URL, elicitation_callback=on_elicitation if elicits else None) as agent:
        report["protocol"] = agent.protocol_version
        tools = {tool.name: tool for tool in (await agent.list_tools()).tools}
        report["tools"] = sorted(tools)
        report["price"] = (tools["add"].meta or {}).get("price")
        arguments = {"a": 2, "b": 5}
        if MODE in ("two-step", "dynamic-tools", "resubmit"):
            first = await agent.call_tool("add", arguments)
            report["first"] = shown(first)
            payment_id = first.structured_content["paymentId"]
            session = pay(first.structured_content["paymentUrl"])
            # A second client that saw the checkout link knows the session id: it takes
            # nothing, and the paid result still goes to the first.
            async with Client(MCP_URL) as thief:
                if MODE == "resubmit":
                    stolen = await thief.call_tool("add", {**arguments, "payment_id": session})
                else:
                    stolen = await thief.call_tool("confirm_add_payment", {"payment_id": session})
                report["stolen"] = shown(stolen)
            if MODE == "resubmit":
                done = await agent.call_tool("add", {**arguments, "payment_id": payment_id})
            else:
                if MODE == "dynamic-tools":
                    listed = (await agent.list_tools()).tools
                    report["listed_after_payment"] = sorted(t.name for t in listed)
                done = await agent.call_tool("confirm_add_payment", {"payment_id": payment_id})
        elif MODE == "progress":
            done = await agent.call_tool("add", arguments, progress_callback=on_progress)
        else:
            done = await agent.call_tool("add", arguments)
        report["done"] = shown(done)
        try:
            refused = await agent.call_tool("add", {"a": "not a number", "b": 1})
            said = shown(refused)
            report["bad_arguments"] = said["text"] if said["isError"] else "answered"
        except Exception as error:  # a protocol error: not how a tool refuses its input
            report["bad_arguments"] = f"protocol error: {error}"
    print(json.dumps(report))


asyncio.run(main())
