"""Mandates: a call whose caller the payer granted a mandate for runs in its first round
trip, in every mode, with `_meta.payment` naming the payment; the budget and the
caller bound it. Over stdio the caller is the example's installation
(`WALLEOT_CUSTOMER`); over HTTP the examples authenticate nobody, so no mandate applies."""

from __future__ import annotations

import uuid

import pytest

from support import explain, status, text

pytestmark = pytest.mark.anyio


@pytest.mark.transports("stdio")
async def test_a_covered_call_runs_in_its_first_round_trip(server, service):
    customer = f"conformance-{uuid.uuid4().hex[:16]}"
    mandate = service.grant_mandate(customer, perCallLimit=50, periodLimit={"amount": 40, "per": "day"})
    before = service.available()
    async with server.client(customer=customer) as client:
        done = await client.call_tool("add", {"a": 2, "b": 3})
        assert text(done) == "5" and done.is_error is not True, explain(done)
        paid = (done.meta or {}).get("payment") or {}
        assert paid.get("mandateId") == mandate["mandateId"], done.meta
        assert (paid.get("amountMinor"), paid.get("currency"), paid.get("amount")) == (19, "USD", 0.19), paid
        assert paid.get("paymentId", "").startswith("pay_"), paid
        # The day's 0.40 covers a second add of 0.19, not a third: then the mode's own flow.
        second = await client.call_tool("add", {"a": 1, "b": 1})
        assert text(second) == "2", explain(second)
        third = await client.call_tool("add", {"a": 1, "b": 2})
        assert status(third) == "payment_required", explain(third)
    assert service.available() - before == 38, "two captures of 0.19"
    status_code, read = service.request("GET", f"mandates/{mandate['mandateId']}")
    assert status_code == 200 and read["spentInPeriod"] == 38, read


@pytest.mark.needs_failing_tool
@pytest.mark.transports("stdio")
async def test_a_failing_tool_under_a_mandate_costs_nothing_and_gives_the_budget_back(server, service):
    customer = f"conformance-{uuid.uuid4().hex[:16]}"
    mandate = service.grant_mandate(customer, perCallLimit=50)
    before = service.available()
    async with server.client(customer=customer) as client:
        failed = await client.call_tool("fragile_report", {"data": "figures"})
        assert failed.is_error is True, explain(failed)
        assert ((failed.meta or {}).get("payment") or {}).get("mandateId") == mandate["mandateId"], failed.meta
    assert service.available() == before, "nothing was charged"
    status_code, read = service.request("GET", f"mandates/{mandate['mandateId']}")
    assert status_code == 200 and read["spentTotal"] == 0, read


@pytest.mark.transports("http", "stateless")
async def test_over_http_without_a_subject_no_mandate_applies(server, service):
    async with server.client() as client:
        asked = await client.call_tool("add", {"a": 1, "b": 1})
    assert status(asked) == "payment_required", explain(asked)
    session = service.session(asked.structured_content["paymentUrl"].rsplit("/", 1)[1])
    assert session["customer"] is None and session["mandateId"] is None, session
