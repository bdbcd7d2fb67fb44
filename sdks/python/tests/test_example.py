"""The example server (examples/paid_server.py) driven by the official MCP client, as
an agent would, over streamable HTTP and stdio, paying through the service's test
helper as a payer would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters

from conftest import session_of

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "paid_server.py"


def text(result) -> str:
    return " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def example_env(service) -> dict[str, str]:
    env = dict(os.environ)
    env.update(WALLEOT_API_URL=service.url, WALLEOT_API_KEY=service.key)
    return env


class HttpExample:
    """The example over streamable HTTP on a free port."""

    def __init__(self, service, mode: str, extra: tuple[str, ...] = ()) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(EXAMPLE), "--mode", mode, "--http", "127.0.0.1:0", *extra],
            env=example_env(service),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.url = None
        for line in self.process.stderr:
            found = re.search(r"MCP over streamable HTTP at (http://\S+/mcp)", line)
            if found:
                self.url = found.group(1)
                break
        assert self.url, "the example prints its address"
        # Keep reading what it logs, so that its writes never meet a full pipe.
        threading.Thread(target=self.process.stderr.read, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.process.kill()
        self.process.wait()


async def agent_run(service, client: Client, mode: str) -> dict:
    """What official_client.py does for the Rust example: list, call, pay, confirm."""
    report: dict = {}
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    report["protocol"] = client.protocol_version
    report["tools"] = sorted(tools)
    report["price"] = (tools["add"].meta or {}).get("price")
    arguments = {"a": 2, "b": 5}
    if mode in ("elicitation", "auto"):
        done = await client.call_tool("add", arguments)
    elif mode == "progress":
        paid = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            if message and "/checkout/" in message and not paid:
                paid.append(re.search(r"/checkout/(sess_[A-Za-z0-9]+)", message).group(1))
                service.pay(paid[0])

        done = await client.call_tool("add", arguments, progress_callback=on_progress)
        report["paid_from_progress"] = bool(paid)
    else:
        first = await client.call_tool("add", arguments)
        report["first"] = first
        payment_id = first.structured_content["paymentId"]
        session = session_of(first)
        service.pay(session)
        if mode == "dynamic-tools":
            report["listed_after_payment"] = sorted(t.name for t in (await client.list_tools()).tools)
        if mode == "resubmit":
            report["stolen"] = await client.call_tool("add", {**arguments, "payment_id": session})
            done = await client.call_tool("add", {**arguments, "payment_id": payment_id})
        else:
            report["stolen"] = await client.call_tool("confirm_add_payment", {"payment_id": session})
            done = await client.call_tool("confirm_add_payment", {"payment_id": payment_id})
    report["done"] = done
    report["bad"] = await client.call_tool("add", {"a": "not a number", "b": 1})
    return report


def check(report: dict, mode: str) -> None:
    assert report["price"] == {"amount": 0.19, "currency": "USD"}, mode
    assert {"ping", "add", "premium_analysis"} <= set(report["tools"]), mode
    if mode == "dynamic-tools":
        assert "confirm_add_payment" in report["listed_after_payment"], mode
    else:
        assert ("confirm_add_payment" in report["tools"]) == (mode != "resubmit"), mode
    done = report["done"]
    assert text(done) == "7" and done.is_error is not True, (mode, text(done))
    assert report["bad"].is_error is True and "nothing was charged" in text(report["bad"]), mode
    if "first" in report:
        first = report["first"]
        assert first.is_error is True, mode
        s = first.structured_content
        assert s["status"] == "payment_required" and s["amount"] == 0.19 and s["amountMinor"] == 19, mode
        assert s["paymentId"] not in s["paymentUrl"], mode
        assert report["stolen"].structured_content["status"] == "refused", mode
        assert report["stolen"].is_error is True, mode
    elif mode == "progress":
        assert report["paid_from_progress"], mode


def elicitation_callback(service, mode):
    if mode not in ("elicitation", "auto"):
        return None

    async def on_elicitation(context, params) -> types.ElicitResult:
        shown = params.url if isinstance(params, types.ElicitRequestURLParams) else params.message
        service.pay(re.search(r"/checkout/(sess_[A-Za-z0-9]+)", shown).group(1))
        return types.ElicitResult(action="accept", content={"paid": True})

    return on_elicitation


@pytest.mark.parametrize("mode", ["two-step", "resubmit", "progress", "elicitation", "auto", "dynamic-tools"])
async def test_the_example_over_streamable_http(service, mode):
    callback = elicitation_callback(service, mode)
    with HttpExample(service, mode) as example:
        async with Client(example.url, elicitation_callback=callback) as client:
            report = await agent_run(service, client, mode)
            assert report["protocol"] == "2026-07-28"
            check(report, mode)
        # The 2025 handshake.
        async with Client(example.url, mode="legacy", elicitation_callback=callback) as client:
            check(await agent_run(service, client, mode), mode)


@pytest.mark.parametrize("mode", ["two-step", "resubmit", "auto", "dynamic-tools"])
async def test_the_example_over_stdio(service, mode):
    params = StdioServerParameters(
        command=sys.executable, args=[str(EXAMPLE), "--mode", mode], env=example_env(service)
    )
    async with Client(params, elicitation_callback=elicitation_callback(service, mode)) as client:
        check(await agent_run(service, client, mode), mode)


def test_the_example_lists_every_mode_and_refuses_unknown_ones(service):
    shown = subprocess.run([sys.executable, str(EXAMPLE), "--help"], capture_output=True, text=True)
    for mode in ("two-step", "resubmit", "elicitation", "progress", "dynamic-tools", "auto"):
        assert mode in shown.stdout, mode
    refused = subprocess.run(
        [sys.executable, str(EXAMPLE), "--mode", "teleport"],
        capture_output=True,
        text=True,
        env=example_env(service),
        timeout=30,
    )
    assert refused.returncode == 2 and "unknown mode" in refused.stderr, refused.stderr
