"""Mandates with the official MCP client against a real service: a call whose caller
the payer granted a mandate for runs in its first round trip, in every mode, captured
after success and released after failure; past the budget, or for another caller, the
mode's own flow asks again. And whom a payment names: the subject, a stdio server's
installation reference, or over HTTP without a subject nobody."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import uuid

import mcp_types as types
import pytest
import uvicorn
from mcp import Client

from walleot import SUPPORTED_MODES, Mode, price
from walleot import _customer

from conftest import session_of
from test_paid_tools import Counted, status, text
from test_stateless import with_credential

pytestmark = pytest.mark.anyio


def grant(service, customer: str, **limits) -> str:
    """A payer pays a first session of `customer` and grants the merchant a mandate
    (`perCallLimit`, `periodLimit` as `{"amount", "per"}`, ... in cents). Answers its id."""
    code, created = service.request("POST", "sessions", {"amount": 19, "currency": "usd", "customer": customer})
    assert code < 300, created
    service.pay(created["sessionId"])
    code, mandate = service.request("POST", f"test_helpers/sessions/{created['sessionId']}/grant_mandate", limits)
    assert code < 300, mandate
    assert mandate["customer"] == customer
    return mandate["mandateId"]


def mandate(service, mandate_id: str) -> dict:
    code, body = service.request("GET", f"mandates/{mandate_id}")
    assert code == 200, body
    return body


def newest(service) -> dict:
    """The session opened last: the one the call just made."""
    return service.session(service.newest_session())


def payment_meta(result) -> dict | None:
    return (result.meta or {}).get("payment")


def bearer(ctx) -> str | None:
    """The server authenticates its users: the Authorization header is the subject."""
    headers = getattr(getattr(ctx, "request", None), "headers", None)
    return headers.get("authorization") if headers is not None else None


class Http:
    """A Counted server over streamable HTTP (with MCP sessions, or stateless), in
    this event loop."""

    def __init__(self, server: Counted, stateless: bool = False) -> None:
        self.server, self.stateless = server, stateless

    async def __aenter__(self) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        app = self.server.mcp.streamable_http_app(stateless_http=self.stateless, host="127.0.0.1")
        self.uvicorn = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.task = asyncio.create_task(self.uvicorn.serve(sockets=[listener]))
        while not self.uvicorn.started:
            await asyncio.sleep(0.02)
        return f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"

    async def __aexit__(self, *exc) -> None:
        self.uvicorn.should_exit = True
        await self.task


def with_flaky(server: Counted) -> Counted:
    """Adds `flaky`, at 0.19 USD, which always fails."""

    @server.mcp.tool()
    @price(0.19, "USD")
    async def flaky() -> str:
        server.ran("flaky")
        raise RuntimeError("flaky failed")

    return server


@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_a_covered_call_runs_in_its_first_round_trip_in_every_mode(service, era):
    token = f"agent-{uuid.uuid4().hex[:12]}"
    mandate_id = grant(service, f"Bearer {token}", perCallLimit=50, periodLimit={"amount": 1000, "per": "day"})
    for mode in SUPPORTED_MODES:
        elicited: list = []

        async def on_elicitation(context, params) -> types.ElicitResult:
            elicited.append(params)
            return types.ElicitResult(action="decline")

        progress: list = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append(message)

        server = Counted(service, mode=mode, identify=bearer, wait_for_payment=5)
        async with Http(server) as url:
            credential = with_credential(url, f"Bearer {token}")
            async with Client(credential, mode=era, elicitation_callback=on_elicitation) as agent:
                done = await agent.call_tool("add", {"a": 2, "b": 3}, progress_callback=on_progress)
                assert text(done) == "5" and done.is_error is not True, (mode, text(done))
                paid = payment_meta(done)
                assert paid is not None, (mode, done)
                assert paid["mandateId"] == mandate_id, mode
                assert (paid["amount"], paid["amountMinor"], paid["currency"]) == (0.19, 19, "USD"), mode
                assert paid["paymentId"].startswith("pay_"), mode
                assert server.runs == {"add": 1}, mode
                assert elicited == [] and progress == [], (mode, elicited, progress)
                session = newest(service)
                assert session["mandateId"] == mandate_id and session["customer"] == f"Bearer {token}", mode
                assert session["captureStatus"] == "captured", (mode, session)
                # Nothing was left open: DYNAMIC_TOOLS lists no confirm tool for it.
                listed = {t.name for t in (await agent.list_tools()).tools}
                assert ("confirm_add_payment" in listed) == (mode not in (Mode.RESUBMIT, Mode.DYNAMIC_TOOLS)), mode
    assert mandate(service, mandate_id)["spentTotal"] == len(SUPPORTED_MODES) * 19, "captured, every one"


async def test_a_stateless_server_runs_a_covered_call_too(service):
    token = f"agent-{uuid.uuid4().hex[:12]}"
    mandate_id = grant(service, f"Bearer {token}", perCallLimit=50, periodLimit={"amount": 100, "per": "day"})
    server = Counted(service, mode=Mode.DYNAMIC_TOOLS, identify=bearer)
    async with Http(server, stateless=True) as url:
        async with Client(with_credential(url, f"Bearer {token}")) as agent:
            done = await agent.call_tool("add", {"a": 20, "b": 22})
            assert text(done) == "42", text(done)
            assert payment_meta(done)["mandateId"] == mandate_id
    assert server.runs == {"add": 1}


async def test_past_the_budget_for_another_caller_or_after_a_failure_the_flow_asks_again(service):
    token = f"agent-{uuid.uuid4().hex[:12]}"
    mandate_id = grant(service, f"Bearer {token}", perCallLimit=20, periodLimit={"amount": 40, "per": "day"}, totalLimit=40)
    server = with_flaky(Counted(service, identify=bearer))
    async with Http(server) as url:
        async with Client(with_credential(url, f"Bearer {token}")) as agent:
            # A tool that fails costs nothing, and gives the budget back.
            failed = await agent.call_tool("flaky", {})
            assert failed.is_error is True and status(failed) is None, text(failed)
            assert "Error executing tool flaky" in text(failed)
            assert payment_meta(failed)["mandateId"] == mandate_id
            session = newest(service)
            assert session["mandateId"] == mandate_id and session["captureStatus"] == "released", session
            assert mandate(service, mandate_id)["spentTotal"] == 0

            # Over the per-call limit: a link, as without a mandate.
            dear = await agent.call_tool("premium_analysis", {"data": "x"})
            assert status(dear) == "payment_required" and payment_meta(dear) is None, text(dear)

            # The 0.40 covers two adds of 0.19, not a third.
            said = []
            for b in (1, 2, 3):
                answer = await agent.call_tool("add", {"a": 1, "b": b})
                said.append("ran" if payment_meta(answer) is not None else status(answer))
            assert said == ["ran", "ran", "payment_required"]
            assert mandate(service, mandate_id)["spentTotal"] == 38

        # Another caller of the same server is not covered.
        other = f"agent-{uuid.uuid4().hex[:12]}"
        async with Client(with_credential(url, f"Bearer {other}")) as stranger:
            asked = await stranger.call_tool("add", {"a": 1, "b": 1})
            assert status(asked) == "payment_required" and payment_meta(asked) is None, text(asked)
            assert service.session(session_of(asked))["customer"] == f"Bearer {other}"
    assert server.runs == {"flaky": 1, "add": 2}


async def test_a_subject_the_service_would_refuse_is_named_by_its_digest(service):
    subject = "ユーザー-" + uuid.uuid4().hex
    digest = "sha256:" + hashlib.sha256(subject.encode("utf-8")).hexdigest()
    mandate_id = grant(service, digest, perCallLimit=50, periodLimit={"amount": 100, "per": "day"})
    server = Counted(service, identify=lambda ctx: subject)
    async with Client(server.mcp) as agent:
        done = await agent.call_tool("add", {"a": 1, "b": 2})
        assert text(done) == "3" and payment_meta(done)["mandateId"] == mandate_id, text(done)


async def test_a_stdio_server_names_its_installation_and_http_without_a_subject_names_nobody(
    service, tmp_path, monkeypatch
):
    monkeypatch.setenv("WALLEOT_STATE_DIR", str(tmp_path))
    # The first server makes the installation's reference; the next one reads it back.
    customers = []
    for _ in range(2):
        server = Counted(service)
        async with Client(server.mcp) as agent:
            asked = await agent.call_tool("add", {"a": 1, "b": 1})
            assert status(asked) == "payment_required", text(asked)
            customers.append(service.session(session_of(asked))["customer"])
    assert customers[0] == customers[1] and customers[0].startswith("inst_"), customers
    assert (tmp_path / "customer").read_text().strip() == customers[0]

    # Once the payer grants it a mandate, that installation's calls just run.
    mandate_id = grant(service, customers[0], perCallLimit=50, periodLimit={"amount": 500, "per": "day"})
    server = Counted(service, mode=Mode.PROGRESS)
    async with Client(server.mcp) as agent:
        done = await agent.call_tool("add", {"a": 20, "b": 22})
        assert text(done) == "42" and payment_meta(done)["mandateId"] == mandate_id, text(done)

    # Over HTTP without `identify`, nobody is named: no mandate applies.
    server = Counted(service, customer=customers[0])
    async with Http(server) as url:
        async with Client(with_credential(url, "Bearer anyone")) as http:
            asked = await http.call_tool("add", {"a": 1, "b": 1})
            assert status(asked) == "payment_required", text(asked)
            assert service.session(session_of(asked))["customer"] is None
    assert server.runs == {}


async def test_a_reference_given_in_code_names_the_stdio_user(service, monkeypatch):
    monkeypatch.setenv("WALLEOT_CUSTOMER", "from-env")
    server = Counted(service, customer="user-" + uuid.uuid4().hex)
    async with Client(server.mcp) as agent:
        asked = await agent.call_tool("add", {"a": 1, "b": 1})
        assert service.session(session_of(asked))["customer"] == server.walleot.customer
    assert server.walleot.customer.startswith("user-")


# Where the installation reference comes from.


def clean(monkeypatch, tmp_path) -> None:
    for name in ("WALLEOT_STATE_DIR", "XDG_STATE_HOME", "WALLEOT_CUSTOMER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_the_installation_reference_is_made_once_and_kept(monkeypatch, tmp_path):
    clean(monkeypatch, tmp_path)
    monkeypatch.setenv("WALLEOT_STATE_DIR", str(tmp_path / "state"))
    made = _customer.installation_customer()
    assert made is not None and made.startswith("inst_") and len(made) == len("inst_") + 24
    assert _customer.is_valid(made)
    assert (tmp_path / "state" / "customer").read_text() == made
    assert _customer.installation_customer() == made, "read back, not made again"
    assert _customer.resolve(None) == made


def test_the_installation_reference_is_kept_where_the_environment_says(monkeypatch, tmp_path):
    clean(monkeypatch, tmp_path)
    home = _customer.installation_customer()
    assert (tmp_path / "home" / ".local" / "state" / "walleot" / "customer").read_text() == home
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    xdg = _customer.installation_customer()
    assert (tmp_path / "xdg" / "walleot" / "customer").read_text() == xdg and xdg != home
    monkeypatch.setenv("WALLEOT_STATE_DIR", str(tmp_path / "state"))
    assert _customer.installation_file() == tmp_path / "state" / "customer"


def test_a_kept_reference_is_read_and_an_unusable_place_names_nobody(monkeypatch, tmp_path):
    clean(monkeypatch, tmp_path)
    monkeypatch.setenv("WALLEOT_STATE_DIR", str(tmp_path))
    # Another process made it first (or the user wrote one): it is read as it is.
    (tmp_path / "customer").write_text("inst_theirs\n")
    assert _customer.installation_customer() == "inst_theirs"
    # A file that holds no reference is never overwritten: nobody is named.
    (tmp_path / "customer").write_text("not\tvalid")
    assert _customer.installation_customer() is None
    assert (tmp_path / "customer").read_text() == "not\tvalid"
    # No directory can be made there.
    (tmp_path / "blocked").write_text("")
    monkeypatch.setenv("WALLEOT_STATE_DIR", str(tmp_path / "blocked" / "state"))
    assert _customer.installation_customer() is None


def test_a_reference_in_code_then_the_environment_come_first_and_invalid_ones_are_passed_over(
    service, monkeypatch, tmp_path
):
    clean(monkeypatch, tmp_path)
    monkeypatch.setenv("WALLEOT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WALLEOT_CUSTOMER", "env-user")
    assert Counted(service, customer="code-user").walleot.customer == "code-user"
    assert Counted(service).walleot.customer == "env-user"
    assert Counted(service, customer="x" * 256).walleot.customer == "env-user"
    assert not (tmp_path / "state" / "customer").exists(), "no file where none is needed"
    for invalid in ("", "two\nlines", "ünïcode", "x" * 256):
        monkeypatch.setenv("WALLEOT_CUSTOMER", invalid)
        assert Counted(service, customer=invalid).walleot.customer.startswith("inst_")
    assert (tmp_path / "state" / "customer").read_text() == Counted(service).walleot.customer


def test_subjects_become_references_the_service_accepts():
    assert _customer.of_subject("Bearer agent-7") == "Bearer agent-7"
    odd = _customer.of_subject("ユーザー")
    assert odd == "sha256:" + hashlib.sha256("ユーザー".encode()).hexdigest()
    assert _customer.is_valid(odd) and odd == _customer.of_subject("ユーザー")
    assert _customer.of_subject("x" * 256).startswith("sha256:")
    assert not any(_customer.is_valid(r) for r in ("", "x" * 256, "a\nb", "\x7f", None))
    assert _customer.is_valid("x" * 255) and _customer.is_valid(" ~")
