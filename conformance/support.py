"""What every conformance test shares: the Walleot service as merchant and payer see
it, the three example servers started alike, and the ways of paying that each mode
offers, all driven through the official MCP Python client.

A test names a target (SDK, mode, transport); `ExampleServer` starts that example, and
`paid_call` pays for a call the way the mode asks a payer to: two steps, a resubmit,
an elicitation answered after paying, or a link seen in a progress notification.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

SDKS = ("rust", "python", "node")
MODES = ("two-step", "resubmit", "elicitation", "progress", "dynamic-tools", "auto")
TRANSPORTS = ("stdio", "http", "stateless")

#: Modes whose main flow pays within one call, where the transport lets the server ask.
IN_CALL_MODES = ("elicitation", "auto", "progress")

ADD_PRICE = {"amount": 0.19, "currency": "USD"}
ANALYSIS_PRICE = {"amount": 0.5, "currency": "USD"}
FRAGILE_PRICE = {"amount": 0.05, "currency": "USD"}

CHECKOUT = re.compile(r"/checkout/(sess_[A-Za-z0-9]+)")


# The service.


@dataclass
class Service:
    """A Walleot service and a test key of its merchant."""

    url: str
    key: str
    #: Where a POST moves the service's clock on 61 s (the rate-limited service only).
    clock: str | None = None

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{self.url}/v1/{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as answer:
            return answer.code, json.loads(answer.read() or b"{}")

    def pay(self, session_id: str) -> None:
        """Pays as a sandbox payer would, through the test helper."""
        status, body = self.request("POST", f"test_helpers/sessions/{session_id}/pay")
        assert status == 200, f"paying {session_id}: {status} {body}"

    def session(self, session_id: str) -> dict:
        status, body = self.request("GET", f"sessions/{session_id}")
        assert status == 200, f"reading {session_id}: {status} {body}"
        return body

    def newest_session(self) -> str | None:
        status, body = self.request("GET", "sessions?limit=1")
        assert status == 200, body
        return body["data"][0]["sessionId"] if body["data"] else None

    def available(self, currency: str = "usd") -> int:
        """The merchant's captured funds in `currency`, in minor units."""
        status, body = self.request("GET", "balance")
        assert status == 200, body
        return sum(b["amount"] for b in body["available"] if b["currency"] == currency)

    def grant_mandate(self, customer: str, **terms: Any) -> dict:
        """The sandbox payer pays a session of `customer` and grants its merchant a
        mandate with these terms (`perCallLimit`, `periodLimit` as `{"amount", "per"}`,
        `totalLimit`, in cents)."""
        status, first = self.request("POST", "sessions", {"amount": 19, "currency": "usd", "customer": customer})
        assert status == 200, first
        self.pay(first["sessionId"])
        status, mandate = self.request("POST", f"test_helpers/sessions/{first['sessionId']}/grant_mandate", terms)
        assert status == 200, mandate
        return mandate

    def exhaust_posts(self) -> None:
        """Spends the rest of the key's POST budget, until the service answers 429."""
        for _ in range(300):
            status, _ = self.request("POST", "sessions", {"amount": 100, "currency": "usd"})
            if status == 429:
                return
        raise AssertionError("the service never rate limited")

    def next_window(self) -> None:
        """Moves the service's clock on 61 s, so that its rate-limit window starts again."""
        assert self.clock, "this service has no clock control"
        request = urllib.request.Request(self.clock, method="POST")
        with urllib.request.urlopen(request, timeout=120) as answer:
            assert answer.status == 200, answer.status


# The example servers.


@dataclass(frozen=True)
class Example:
    """How one SDK's example server is started, and the flags its --help lists."""

    sdk: str
    command: tuple[str, ...]
    help: str

    def offers(self, flag: str) -> bool:
        return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", self.help) is not None

    @classmethod
    def probe(cls, sdk: str, command: list[str]) -> Example:
        shown = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60)
        if shown.returncode != 0 or "--mode" not in shown.stdout:
            raise RuntimeError(
                f"`{' '.join(command)} --help` did not show the example's usage "
                f"(exit {shown.returncode}): {shown.stderr.strip()[-500:]}"
            )
        return cls(sdk, tuple(command), shown.stdout)


@dataclass(frozen=True)
class Target:
    """One cell of the matrix: an SDK's example in a mode over a transport."""

    sdk: str
    mode: str
    transport: str

    @property
    def id(self) -> str:
        return f"{self.sdk}-{self.mode}-{self.transport}"


def pays_in_call(target: Target, client: Client) -> bool:
    """Whether the main flow pays within the call: PROGRESS always (progress rides the
    call's own response); ELICITATION and AUTO where the server can ask the client
    mid-call: on MCP 2026-07-28 always (an input-required result), before it only with
    a session to send a request on, which stateless HTTP has not."""
    if target.mode == "progress":
        return True
    if target.mode not in ("elicitation", "auto"):
        return False
    return client.protocol_version == "2026-07-28" or target.transport != "stateless"


@dataclass
class ExampleServer:
    """A running example (HTTP), or how to start one per connection (stdio)."""

    example: Example
    target: Target
    service: Service
    flags: tuple[str, ...] = ()
    url: str | None = None
    process: subprocess.Popen | None = None
    log: deque = field(default_factory=lambda: deque(maxlen=200))

    @property
    def mode(self) -> str:
        return self.target.mode

    def argv(self) -> list[str]:
        argv = [*self.example.command, "--mode", self.target.mode, *self.flags]
        if self.target.transport in ("http", "stateless"):
            argv += ["--http", "127.0.0.1:0"]
        if self.target.transport == "stateless":
            argv.append("--stateless")
        return argv

    def env(self, customer: str | None = None) -> dict[str, str]:
        """The example's environment; `customer` names its installation (stdio)."""
        env = dict(os.environ)
        env.update(WALLEOT_API_URL=self.service.url, WALLEOT_API_KEY=self.service.key)
        env.setdefault("WALLEOT_STATE_DIR", tempfile.gettempdir())
        if customer is not None:
            env["WALLEOT_CUSTOMER"] = customer
        return env

    def __enter__(self) -> ExampleServer:
        if self.target.transport == "stdio":
            return self  # each connection starts its own process
        self.process = subprocess.Popen(
            self.argv(), env=self.env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )
        lines: queue.Queue = queue.Queue()

        def drain() -> None:
            # Reads to the end, so that the server never blocks on a full pipe.
            for line in self.process.stderr:
                self.log.append(line.rstrip())
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + 60
        while self.url is None:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                line = None
            if line is None:
                self.__exit__()
                raise RuntimeError(f"{self.target.id} did not print its address:\n{self.tail()}")
            found = re.search(r"MCP over streamable HTTP at (http://\S+/mcp)", line)
            if found:
                self.url = found.group(1)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def alive(self) -> bool:
        return self.process is None or self.process.poll() is None

    def tail(self) -> str:
        return "\n".join(self.log)

    def client(
        self, payer: Payer | None = None, *, anonymous: bool = False, customer: str | None = None, **options: Any
    ) -> Client:
        """A new MCP connection (stdio: a new server process). With a payer, it declares
        elicitation and pays what it is asked to (ELICITATION and AUTO).

        Over HTTP every connection sends a bearer credential of its own, as an agent
        signed in to the server does: MCP 2026-07-28 has no sessions, so that is what
        tells its callers apart. `anonymous=True` sends none."""
        options.setdefault("cache", None)  # always the server's own tool list
        options.setdefault("read_timeout_seconds", 90)
        if payer is not None and self.mode in ("elicitation", "auto"):
            options.setdefault("elicitation_callback", payer.on_elicitation)
        if self.target.transport == "stdio":
            argv = self.argv()
            where = StdioServerParameters(command=argv[0], args=argv[1:], env=self.env(customer))
            return Client(where, **options)
        if anonymous:
            return Client(self.url, **options)
        return Client(_with_credential(self.url, "Bearer " + secrets.token_urlsafe(16)), **options)


@asynccontextmanager
async def _with_credential(url: str, authorization: str) -> AsyncIterator[Any]:
    """Streamable HTTP to `url`, every request carrying `authorization`."""
    async with create_mcp_http_client(headers={"Authorization": authorization}) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams


# Reading answers.


def text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def structured(result: types.CallToolResult) -> dict:
    return result.structured_content or {}


def status(result: types.CallToolResult) -> str | None:
    return structured(result).get("status")


def session_in(shown: str) -> str:
    found = CHECKOUT.search(shown or "")
    assert found, f"no checkout link in {shown!r}"
    return found.group(1)


def session_of(answer: types.CallToolResult) -> str:
    """The session id in a payment request's checkout link."""
    return session_in(structured(answer).get("paymentUrl", ""))


def payment_id_of(answer: types.CallToolResult) -> str:
    payment_id = structured(answer).get("paymentId")
    assert isinstance(payment_id, str), f"no paymentId in {structured(answer)}"
    return payment_id


def explain(result: types.CallToolResult) -> str:
    return f"isError={result.is_error} text={text(result)!r} structured={structured(result)}"


# Paying.


@dataclass
class Payer:
    """The person behind the agent: pays every link shown to them, once."""

    service: Service
    #: How the payer answers an elicitation: "accept" (after paying), "decline", or
    #: "cancel" (the client dismissed it; nothing is paid).
    action: str = "accept"
    sessions: list[str] = field(default_factory=list)
    elicitations: list[Any] = field(default_factory=list)
    progress: list[str] = field(default_factory=list)
    #: When the last payment was made (time.monotonic()).
    paid_at: float | None = None

    def pay_link(self, shown: str) -> None:
        session = session_in(shown)
        if session not in self.sessions:
            self.service.pay(session)
            self.sessions.append(session)
            self.paid_at = time.monotonic()

    async def on_elicitation(self, context: Any, params: Any) -> types.ElicitResult:
        self.elicitations.append(params)
        shown = params.url if isinstance(params, types.ElicitRequestURLParams) else params.message
        if self.action != "accept":
            return types.ElicitResult(action=self.action)
        self.pay_link(shown)
        return types.ElicitResult(action="accept", content={"paid": True})

    def shown_link(self) -> str:
        """The checkout link of the last elicitation."""
        asked = self.elicitations[-1]
        return getattr(asked, "url", None) or asked.message

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        if message:
            self.progress.append(message)
        if message and CHECKOUT.search(message):
            self.pay_link(message)


async def confirm(client: Client, mode: str, tool: str, arguments: dict, payment_id: Any) -> types.CallToolResult:
    """The second step: the confirm tool, or (RESUBMIT) the same call with the payment id."""
    if mode == "resubmit":
        return await client.call_tool(tool, {**arguments, "payment_id": payment_id})
    return await client.call_tool(f"confirm_{tool}_payment", {"payment_id": payment_id})


async def paid_call(
    server: ExampleServer, client: Client, payer: Payer, tool: str, arguments: dict
) -> tuple[types.CallToolResult, str, types.CallToolResult | None]:
    """Calls `tool` and pays for it the way the target's mode offers. Answers the final
    result, the session that paid, and the payment request when there were two steps."""
    if server.mode == "progress":
        result = await client.call_tool(tool, arguments, progress_callback=payer.on_progress)
    else:
        result = await client.call_tool(tool, arguments)
    if pays_in_call(server.target, client):
        assert payer.sessions, f"{server.target.id}: nothing was asked of the payer within the call: {explain(result)}"
        return result, payer.sessions[-1], None
    first = result
    assert status(first) == "payment_required", f"{server.target.id}: {explain(first)}"
    session = session_of(first)
    payer.service.pay(session)
    result = await confirm(client, server.mode, tool, arguments, payment_id_of(first))
    return result, session, first
