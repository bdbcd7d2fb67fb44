"""What a payment cannot be made to do, tried as an attacker would from outside: pay for
a dearer tool, for other arguments, for another caller who saw the link, or be moved
inside a sealed request state; and bad arguments never reach the payment service."""

from __future__ import annotations

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from support import Payer, confirm, explain, payment_id_of, session_in, session_of, status, text

pytestmark = pytest.mark.anyio


async def requested(client, tool: str, arguments: dict):
    """A payment request (the first step in every mode, for a client that neither
    elicits nor asks for progress)."""
    answer = await client.call_tool(tool, arguments)
    assert answer.is_error is True and status(answer) == "payment_required", explain(answer)
    return answer


async def test_a_cheap_payment_does_not_confirm_an_expensive_tool(server, service, connect):
    arguments = {"a": 1, "b": 1}
    async with connect() as client:
        cheap = await requested(client, "add", arguments)
        session, payment_id = session_of(cheap), payment_id_of(cheap)
        service.pay(session)
        stolen = await confirm(client, server.mode, "premium_analysis", {"data": "x"}, payment_id)
        assert stolen.is_error is True and status(stolen) == "refused", explain(stolen)
        assert service.session(session)["captureStatus"] == "held", "nothing was captured"
        # The payment still pays for what it was made for.
        done = await confirm(client, server.mode, "add", arguments, payment_id)
        assert text(done) == "2", explain(done)


async def test_a_payment_does_not_pay_for_other_arguments(server, service, connect):
    arguments = {"a": 1, "b": 2}
    async with connect() as client:
        first = await requested(client, "add", arguments)
        session, payment_id = session_of(first), payment_id_of(first)
        service.pay(session)
        if server.mode == "resubmit":
            other = await client.call_tool("add", {"a": 100, "b": 2, "payment_id": payment_id})
            assert other.is_error is True and status(other) == "refused", explain(other)
            assert service.session(session)["captureStatus"] == "held", "nothing was captured"
            done = await client.call_tool("add", {"b": 2, "a": 1, "payment_id": payment_id})
        else:
            # The confirm tool names only the payment: arguments slipped beside it must
            # never change the call that was paid for.
            try:
                other = await client.call_tool("confirm_add_payment", {"payment_id": payment_id, "a": 100, "b": 2})
                assert text(other) == "3" or other.is_error is True, explain(other)
            except MCPError as refused:  # invalid params: refused before anything ran
                assert "102" not in refused.error.message
            done = await confirm(client, server.mode, "add", arguments, payment_id)
        assert text(done) == "3" and done.is_error is not True, explain(done)
    assert service.session(session)["captureStatus"] == "captured"


async def test_another_caller_cannot_take_the_payment_with_what_the_link_shows(server, service, connect):
    arguments = {"a": 2, "b": 2}
    async with connect() as owner:
        first = await requested(owner, "add", arguments)
        session, payment_id = session_of(first), payment_id_of(first)
        service.pay(session)
        # Whoever saw the checkout link knows the session id; it takes nothing.
        async with server.client() as thief:
            for guess in (session, "pay_" + session[5:]):
                stolen = await confirm(thief, server.mode, "add", arguments, guess)
                assert stolen.is_error is True and status(stolen) == "refused", f"{guess}: {explain(stolen)}"
        assert service.session(session)["captureStatus"] == "held", "nothing was captured"
        done = await confirm(owner, server.mode, "add", arguments, payment_id)
        assert text(done) == "4", explain(done)


async def test_one_caller_cannot_open_more_than_ten_unpaid_payments(server, service):
    async with server.client() as greedy:  # a connection of its own: it ends with ten open
        statuses = [status(await greedy.call_tool("add", {"a": a, "b": 1})) for a in range(10)]
        assert statuses == ["payment_required"] * 10, statuses
        before = service.newest_session()
        refused = await greedy.call_tool("add", {"a": 99, "b": 1})
        assert refused.is_error is True and status(refused) == "refused", explain(refused)
        assert "unpaid payments are open" in text(refused), text(refused)
        assert service.newest_session() == before, "a refusal never reaches the service"
        async with server.client() as other:
            fair = await other.call_tool("add", {"a": 1, "b": 1})
            assert status(fair) == "payment_required", f"another caller still may: {explain(fair)}"


@pytest.mark.transports("http", "stateless")
async def test_the_payment_id_confirms_from_a_new_connection(server, service, connect):
    # The payment id is the right to confirm: a client that reconnects still gets what
    # was paid for (stdio: a new connection is a new server process, with other memory).
    arguments = {"a": 5, "b": 5}
    async with connect() as client:
        first = await requested(client, "add", arguments)
    service.pay(session_of(first))
    async with server.client() as again:
        done = await confirm(again, server.mode, "add", arguments, payment_id_of(first))
        assert text(done) == "10", explain(done)


async def test_bad_arguments_are_refused_before_any_money_is_asked_for(server, service, connect):
    payer = Payer(service)
    before = service.newest_session()
    async with connect(payer) as client:
        for bad in ({"a": "not a number", "b": 1}, {"a": 1}):
            # A tool error the model can correct (MCP asks this of input errors), not a
            # protocol error.
            answer = await client.call_tool("add", bad, progress_callback=payer.on_progress)
            assert answer.is_error is True, f"{bad}: {explain(answer)}"
            assert "nothing was charged" in text(answer), f"{bad}: {explain(answer)}"
    assert service.newest_session() == before, "no session was created"
    assert not payer.sessions and not payer.elicitations


@pytest.mark.needs_2026
@pytest.mark.modes("elicitation", "auto")
async def test_a_sealed_request_state_moved_to_another_call_runs_nothing(server, service, connect):
    # MCP 2026-07-28: the payment travels in the input-required round trip's request
    # state, sealed to the call's tool and arguments.
    payer = Payer(service)
    async with connect(payer) as client:
        assert client.protocol_version == "2026-07-28"
        first = await client.session.call_tool("add", {"a": 1, "b": 1}, allow_input_required=True)
        assert isinstance(first, types.InputRequiredResult), first
        state = first.request_state
        asked = first.input_requests["payment"].params
        session = session_in(getattr(asked, "url", None) or asked.message)
        service.pay(session)
        accept = {"payment": types.ElicitResult(action="accept", content={"paid": True})}

        async def retry(tool: str, arguments: dict, sealed: str):
            return await client.session.call_tool(
                tool, arguments, input_responses=accept, request_state=sealed, allow_input_required=True
            )

        forged = state[:-6] + ("BBBBBB" if state.endswith("AAAAAA") else "AAAAAA")
        for tool, arguments, sealed in (
            ("add", {"a": 50, "b": 1}, state),
            ("premium_analysis", {"data": "x"}, state),
            ("add", {"a": 1, "b": 1}, forged),
        ):
            try:
                moved = await retry(tool, arguments, sealed)
                assert isinstance(moved, types.CallToolResult) and moved.is_error is True, f"{tool} {arguments}: {moved}"
            except MCPError:
                pass  # refused as a protocol error: nothing ran either
        assert service.session(session)["captureStatus"] == "held", "nothing was captured"
        done = await retry("add", {"b": 1, "a": 1}, state)
        assert isinstance(done, types.CallToolResult) and text(done) == "2", done
    assert service.session(session)["captureStatus"] == "captured"
