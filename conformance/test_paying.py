"""Paying in every mode: the payment request, the payment, the result once the funds are
captured; a repeated or concurrent confirmation charges once; a tool that fails costs
the payer nothing."""

from __future__ import annotations

import time

import anyio
import pytest

from support import (
    Payer,
    confirm,
    explain,
    paid_call,
    pays_in_call,
    payment_id_of,
    session_in,
    session_of,
    status,
    structured,
    text,
)

pytestmark = pytest.mark.anyio


def check_payment_request(answer, tool: str, minor: int, mode: str) -> None:
    """The fields every SDK answers a payment request with."""
    s = structured(answer)
    assert answer.is_error is True, f"a payment request is never the tool's result: {explain(answer)}"
    assert s.get("status") == "payment_required", explain(answer)
    assert (s.get("amount"), s.get("amountMinor"), s.get("currency"), s.get("tool")) == (
        minor / 100,
        minor,
        "USD",
        tool,
    ), s
    assert isinstance(s.get("expiresAt"), str) and s["expiresAt"].endswith("Z"), s
    payment_id = s.get("paymentId", "")
    assert payment_id.startswith("pay_") and len(payment_id) >= 26, s
    assert payment_id not in s.get("paymentUrl", ""), "the payment id is a secret of its own, not in the link"
    confirm_step = "again" if mode == "resubmit" else f"confirm_{tool}_payment"
    assert confirm_step in s.get("nextStep", ""), s
    assert payment_id in text(answer) and s["paymentUrl"] in text(answer), text(answer)


async def test_a_paid_call_returns_its_result_once_the_payment_is_captured(server, service, connect):
    payer = Payer(service)
    before = service.available()
    async with connect(payer) as client:
        result, session, first = await paid_call(server, client, payer, "add", {"a": 1, "b": 2})
        answered = time.monotonic()
    assert result.is_error is not True and text(result) == "3", explain(result)
    if first is None:
        # The wait is a long poll of the service: a payment is seen at once.
        assert answered - payer.paid_at < 3, f"the payment was seen {answered - payer.paid_at:.1f} s after it was made"
    paid = service.session(session)
    assert (paid["status"], paid["captureStatus"]) == ("paid", "captured"), paid
    assert service.available() - before == 19, "one charge of 0.19 USD"
    if first is not None:
        check_payment_request(first, "add", 19, server.mode)
    elif server.mode == "progress":
        shown = [m for m in payer.progress if "/checkout/" in m]
        assert shown and "0.19 USD" in shown[0], payer.progress
    else:
        asked = payer.elicitations[0]
        shown = getattr(asked, "url", None) or asked.message
        assert "/checkout/sess_" in shown, asked
        secret = getattr(asked, "elicitation_id", None)
        assert not secret or secret not in shown, "the payment id is not in the link"


async def test_a_payment_request_reads_the_same_before_and_after_an_early_confirm(server, service, connect):
    # Without elicitation or a progress token every mode answers with the link.
    async with connect() as client:
        first = await client.call_tool("premium_analysis", {"data": "one two three"})
        check_payment_request(first, "premium_analysis", 50, server.mode)
        early = await confirm(client, server.mode, "premium_analysis", {"data": "one two three"}, payment_id_of(first))
        assert early.is_error is True and status(early) == "pending", explain(early)
        assert structured(early).get("paymentId") == payment_id_of(first)
        assert service.session(session_of(first))["status"] == "pending", "nothing ran, nothing was paid"


async def test_an_unknown_payment_id_says_what_became_of_the_money(server, connect):
    async with connect() as client:
        unknown = await confirm(client, server.mode, "add", {"a": 1, "b": 1}, "pay_forgotten_by_a_restart")
    said = text(unknown)
    assert unknown.is_error is True and status(unknown) == "refused", explain(unknown)
    assert "Nothing is charged" in said and "hold deadline" in said, said


async def test_a_second_confirm_returns_the_kept_result_without_charging_again(server, service, connect):
    arguments = {"data": "one two three"}
    async with connect() as client:
        first = await client.call_tool("premium_analysis", arguments)
        assert status(first) == "payment_required", explain(first)
        session, payment_id = session_of(first), payment_id_of(first)
        service.pay(session)
        before = service.available()
        done = await confirm(client, server.mode, "premium_analysis", arguments, payment_id)
        assert done.is_error is not True and text(done) == "3 words, 13 characters", explain(done)
        charged = service.available()
        assert charged - before == 50
        again = await confirm(client, server.mode, "premium_analysis", arguments, payment_id)
        assert again.is_error is not True and text(again) == text(done), explain(again)
    assert service.available() == charged, "the kept result is not charged again"
    assert service.session(session)["captureStatus"] == "captured"


async def test_ten_concurrent_confirms_run_the_tool_once(server, service, connect):
    arguments = {"a": 20, "b": 22}
    async with connect() as client:
        first = await client.call_tool("add", arguments)
        assert status(first) == "payment_required", explain(first)
        session, payment_id = session_of(first), payment_id_of(first)
        service.pay(session)
        before = service.available()
        answers: list = [None] * 10

        async def confirming(i: int) -> None:
            answers[i] = await confirm(client, server.mode, "add", arguments, payment_id)

        async with anyio.create_task_group() as group:
            for i in range(10):
                group.start_soon(confirming, i)
    assert [text(a) for a in answers] == ["42"] * 10, [explain(a) for a in answers]
    assert all(a.is_error is not True for a in answers)
    assert service.available() - before == 19, "one capture"
    assert service.session(session)["captureStatus"] == "captured"


@pytest.mark.modes("elicitation", "auto")
async def test_a_payer_who_declines_cancels_the_payment(server, service, connect):
    payer = Payer(service, action="decline")
    async with connect(payer) as client:
        refused = await client.call_tool("add", {"a": 1, "b": 1})
        asks = pays_in_call(server.target, client)
    if not asks:
        # Stateless HTTP before MCP 2026-07-28 cannot ask mid-call: two steps instead.
        assert status(refused) == "payment_required" and not payer.elicitations, explain(refused)
        return
    assert refused.is_error is True and status(refused) == "refused", explain(refused)
    assert "declined" in text(refused), text(refused)
    session = service.session(session_in(payer.shown_link()))
    assert session["status"] == "cancelled", session


@pytest.mark.modes("elicitation", "auto")
async def test_a_dismissed_elicitation_leaves_the_link_payable(server, service, connect):
    payer = Payer(service, action="cancel")
    async with connect(payer) as client:
        answer = await client.call_tool("add", {"a": 1, "b": 1})
        assert bool(payer.elicitations) == pays_in_call(server.target, client), explain(answer)
        assert answer.is_error is True and status(answer) == "payment_required", explain(answer)
        assert "declined" not in text(answer)
        session = session_of(answer)
        assert service.session(session)["status"] == "pending", "the link stays payable"
        service.pay(session)
        done = await client.call_tool("confirm_add_payment", {"payment_id": payment_id_of(answer)})
        assert text(done) == "2", explain(done)


@pytest.mark.needs_failing_tool
async def test_a_failing_tool_releases_the_payers_funds(server, service, connect):
    payer = Payer(service)
    before = service.available()
    async with connect(payer) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert "fragile_report" in tools, "the example serves no fragile_report (--failing-tool)"
        result, session, first = await paid_call(server, client, payer, "fragile_report", {"data": "figures"})
        if first is not None:
            check_payment_request(first, "fragile_report", 5, server.mode)
        assert result.is_error is True, explain(result)
        assert status(result) not in ("payment_required", "pending", "settling"), explain(result)
        released = service.session(session)
        assert (released["status"], released["captureStatus"]) == ("cancelled", "released"), released
        assert service.available() == before, "nothing was charged"
