"""When the payment service cannot help: down, or rate limiting the merchant's key. The
call answers a clear tool error in every mode and the server lives on; a result whose
capture the service refuses waits, kept, until the capture succeeds."""

from __future__ import annotations

import socket
import time

import pytest

from support import Payer, Service, confirm, explain, payment_id_of, session_of, status, structured, text

pytestmark = pytest.mark.anyio


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def main_call(server, client, payer):
    """The mode's own way of calling a priced tool."""
    return await client.call_tool("add", {"a": 1, "b": 1}, progress_callback=payer.on_progress)


async def test_a_service_that_is_down_gives_a_clear_tool_error(start, service):
    port = closed_port()
    server = start(Service(f"http://127.0.0.1:{port}", service.key))
    payer = Payer(service)
    async with server.client(payer) as client:
        started = time.monotonic()
        failed = await main_call(server, client, payer)
        assert time.monotonic() - started < 15, "an error, not a hang"
        said = text(failed)
        assert failed.is_error is True and status(failed) == "error", explain(failed)
        assert "could not be reached" in said and "nothing was charged" in said, said
        assert str(port) not in said, "the service's address stays in the server's log"
        assert text(await client.call_tool("ping", {})) == "pong", "the server lives on"
    assert server.alive()
    assert not payer.sessions


async def test_a_rate_limited_service_is_reported_with_its_wait(start, limited):
    server = start(limited)
    payer = Payer(limited)
    async with server.client(payer) as client:
        limited.exhaust_posts()
        answer = await main_call(server, client, payer)
        said = text(answer)
        assert answer.is_error is True and status(answer) == "rate_limited", explain(answer)
        assert "rate limited by the payment service, retry in" in said, said
        assert "could not be reached" not in said, said
        assert 1 <= structured(answer).get("retryAfter", 0) <= 60, structured(answer)
        assert text(await client.call_tool("ping", {})) == "pong", "the server lives on"
    assert server.alive()
    assert not payer.sessions


@pytest.mark.modes("two-step")
@pytest.mark.transports("stdio")
@pytest.mark.timeout(400)  # two moves of the clock; a stand-in clock may wait them out
async def test_a_result_is_handed_out_only_after_its_capture(start, limited):
    server = start(limited)
    limited.next_window()  # a fresh budget: the request and the payment take two POSTs
    arguments = {"a": 1, "b": 2}
    async with server.client() as client:
        first = await client.call_tool("add", arguments)
        assert status(first) == "payment_required", explain(first)
        session, payment_id = session_of(first), payment_id_of(first)
        limited.pay(session)
        limited.exhaust_posts()
        for _ in range(2):
            waiting = await confirm(client, server.mode, "add", arguments, payment_id)
            assert waiting.is_error is True and status(waiting) == "settling", explain(waiting)
            assert text(waiting) != "3", "no result before the capture"
            assert structured(waiting).get("retryAfter", 0) >= 1, structured(waiting)
            assert limited.session(session)["captureStatus"] == "held"
        limited.next_window()
        done = await confirm(client, server.mode, "add", arguments, payment_id)
        assert text(done) == "3" and done.is_error is not True, explain(done)
        assert limited.session(session)["captureStatus"] == "captured"
        again = await confirm(client, server.mode, "add", arguments, payment_id)
        assert text(again) == "3", explain(again)
