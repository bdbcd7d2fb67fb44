"""ELICITATION and AUTO with the official MCP client against a real service: URL
elicitation on MCP 2025-11-25 (a server request) and on 2026-07-28 (an input-required
round trip sealed by the server's request-state boundary), and every way out."""

from __future__ import annotations

import re
import time

import mcp_types as types
import pytest
from mcp import Client

from walleot import Mode, Walleot

from conftest import session_of
from test_paid_tools import Counted, status, text

pytestmark = pytest.mark.anyio


def paying(service, action="accept", content=None, seen=None):
    """An elicitation callback: pays the linked session (for "accept"), then answers."""

    async def on_elicitation(context, params) -> types.ElicitResult:
        shown = params.url if isinstance(params, types.ElicitRequestURLParams) else params.message
        session = re.search(r"/checkout/(sess_[A-Za-z0-9]+)", shown).group(1)
        if seen is not None:
            seen.append((params, session))
        if action == "accept" and content != {"paid": False}:
            service.pay(session)
        return types.ElicitResult(action=action, content=content if content is not None else {"paid": True})

    return on_elicitation


@pytest.mark.parametrize("mode", [Mode.ELICITATION, Mode.AUTO])
@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_elicitation_pays_and_runs_in_the_same_call(service, mode, era):
    server = Counted(service, mode=mode)
    seen: list = []
    async with Client(server.mcp, mode=era, elicitation_callback=paying(service, seen=seen)) as client:
        done = await client.call_tool("add", {"a": 2, "b": 5})
        assert text(done) == "7" and done.is_error is not True, text(done)
    params, session = seen[0]
    assert isinstance(params, types.ElicitRequestURLParams)
    assert params.elicitation_id.startswith("pay_") and params.elicitation_id not in params.url
    assert service.session(session)["captureStatus"] == "captured"
    assert server.runs == {"add": 1}


@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_a_payer_who_declines_cancels_the_payment(service, era):
    server = Counted(service, mode=Mode.ELICITATION)
    seen: list = []
    async with Client(server.mcp, mode=era, elicitation_callback=paying(service, "decline", seen=seen)) as client:
        refused = await client.call_tool("add", {"a": 1, "b": 1})
        assert refused.is_error is True and status(refused) == "refused"
        assert "declined" in text(refused)
    assert service.session(seen[0][1])["status"] == "cancelled"
    assert server.runs == {}


@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_a_dismissed_elicitation_leaves_the_link_payable(service, era):
    server = Counted(service, mode=Mode.ELICITATION)
    async with Client(server.mcp, mode=era, elicitation_callback=paying(service, "cancel")) as client:
        answer = await client.call_tool("add", {"a": 1, "b": 1})
        assert answer.is_error is True and status(answer) == "payment_required", text(answer)
        assert "declined" not in text(answer)
        session = session_of(answer)
        assert service.session(session)["status"] == "pending"
        service.pay(session)
        done = await client.call_tool("confirm_add_payment", {"payment_id": answer.structured_content["paymentId"]})
        assert text(done) == "2"


@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_a_form_that_says_unpaid_is_answered_at_once(service, era, monkeypatch):
    # A client that declares form elicitation only.
    monkeypatch.setattr(
        Walleot, "_elicitation", staticmethod(lambda ctx: types.ElicitationCapability(form=types.FormElicitationCapability()))
    )
    server = Counted(service, mode=Mode.ELICITATION)
    seen: list = []
    callback = paying(service, content={"paid": False}, seen=seen)
    async with Client(server.mcp, mode=era, elicitation_callback=callback) as client:
        started = time.monotonic()
        answer = await client.call_tool("add", {"a": 1, "b": 1})
        assert time.monotonic() - started < 5
        assert answer.is_error is True and status(answer) == "pending", text(answer)
    assert isinstance(seen[0][0], types.ElicitRequestFormParams)
    assert server.runs == {}


@pytest.mark.parametrize("mode", [Mode.ELICITATION, Mode.AUTO])
@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_a_client_without_elicitation_gets_two_steps(service, mode, era):
    server = Counted(service, mode=mode)
    async with Client(server.mcp, mode=era) as client:
        answer = await client.call_tool("add", {"a": 2, "b": 3})
        assert status(answer) == "payment_required" and answer.is_error is True
        service.pay(session_of(answer))
        done = await client.call_tool("confirm_add_payment", {"payment_id": answer.structured_content["paymentId"]})
        assert text(done) == "5"
