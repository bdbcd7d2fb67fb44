"""`Walleot`: prices on the tools of an `mcp` MCPServer, paid through Walleot.

Walleot installs one middleware on the server (`MCPServer.middleware`, the official
package's hook that wraps every inbound message). It reads prices from the tool
functions at request time, so tools registered before or after `Walleot(mcp, ...)`
are priced alike. In tools/list it adds each price to the tool's `_meta` and the
confirm tools or `payment_id` arguments the mode needs; it stands in front of every
tools/call of a priced tool; everything else passes through unchanged. A paid call
runs through the rest of the server's own pipeline, so the tool behaves exactly as
it would without a price: async or sync, with or without a context parameter, with
any return type.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import secrets
import time
import uuid
from typing import Any, Awaitable, Callable, Mapping

from anyio import fail_after as anyio_fail_after

from . import _answers as answers
from . import _customer
from ._client import ServiceClient, ServiceError
from ._mode import Mode
from ._price import Price, price_of
from ._store import (
    DONE,
    RAN,
    RUNNING,
    MemoryStore,
    PaymentStore,
    PendingPayment,
    StoreError,
    StoreFull,
    TooManyOpen,
    arguments_hash,
)

log = logging.getLogger("walleot")

#: The service's address when neither `baseUrl` nor `WALLEOT_API_URL` is given.
DEFAULT_API_URL = "http://127.0.0.1:8080"
DEFAULT_PAYMENT_TTL = 30 * 60
DEFAULT_MAX_OPEN_PER_CALLER = 10
DEFAULT_MAX_OPEN = 1_000

#: Modes this SDK runs; the others are refused at construction, never half-run.
SUPPORTED_MODES = (Mode.TWO_STEP, Mode.RESUBMIT, Mode.PROGRESS, Mode.ELICITATION, Mode.AUTO, Mode.DYNAMIC_TOOLS)

#: Waits within one call are capped here; longer ones are left to the next confirm.
_LONGEST_INLINE_WAIT = 2.0
_SETTLE_ATTEMPTS = 3

try:  # the 2026-07-28 revision wants `resultType` on every result
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS as _MODERN
except ImportError:  # pragma: no cover
    _MODERN = ()

Handler = Callable[[Any], Awaitable[Any]]

#: Marks the request state of Walleot's input-required round trips (MCP 2026-07-28);
#: the server's RequestStateBoundary seals it to the call's tool and arguments.
_STATE_PREFIX = "walleot:"


def confirm_tool_name(tool: str) -> str:
    """The companion tool that confirms a payment for `tool`."""
    return f"confirm_{tool}_payment"


def binding_metadata(tool: str, hashed_arguments: str) -> dict[str, str]:
    """What a session records of the call it pays for; the service answers it on every
    read, so a confirmation checks it whatever the payment store says."""
    return {"walleot_tool": tool, "walleot_arguments_hash": hashed_arguments}


def new_payment_id() -> str:
    """A fresh payment id: 192 random bits, the client's proof of the right to confirm."""
    return "pay_" + secrets.token_urlsafe(24)


def credential_owner(credential: str) -> str:
    """The owner a credential stands for: its digest, so that a store never keeps it."""
    return "credential:" + hashlib.sha256(credential.encode("utf-8")).hexdigest()[:32]


@dataclasses.dataclass
class Caller:
    #: The authenticated subject, where the server names one: payments are bound to it.
    subject: str | None
    #: What the per-caller cap counts by: subject, MCP session, connection, or over HTTP
    #: without a session the Authorization credential. None for a stateless request
    #: without a credential, which has nothing to be told apart by.
    owner: str | None
    #: The customer reference a mandate may cover: the subject, or a stdio server's
    #: installation reference; none over HTTP without a subject.
    customer: str | None = None


class OpenConfirms:
    """DYNAMIC_TOOLS: caller -> tool -> {payment id: Unix second its link expires}."""

    def __init__(self) -> None:
        self._open: dict[str, dict[str, dict[str, float]]] = {}

    def open(self, owner: str, tool: str, payment_id: str, expires: float, now: float) -> bool:
        """Opens a payment; True when the caller's confirm tool thereby appears."""
        before = self.is_open(owner, tool, now)
        self._open.setdefault(owner, {}).setdefault(tool, {})[payment_id] = expires
        return not before

    def close(self, owner: str, tool: str, payment_id: str, now: float) -> bool:
        """Closes a payment; True when the caller's confirm tool thereby disappears."""
        before = self.is_open(owner, tool, now)
        self._open.get(owner, {}).get(tool, {}).pop(payment_id, None)
        return before and not self.is_open(owner, tool, now)

    def is_open(self, owner: str, tool: str, now: float) -> bool:
        """Whether the caller has an open payment of `tool`; forgets expired ones."""
        tools = self._open.get(owner)
        if tools is None:
            return False
        ids = tools.get(tool)
        if ids is not None:
            for payment_id in [i for i, expires in ids.items() if expires <= now]:
                del ids[payment_id]
        found = bool(ids)
        for name in [t for t, i in tools.items() if not i]:
            del tools[name]
        if not tools:
            del self._open[owner]
        return found

    def __len__(self) -> int:
        return len(self._open)


def _as_dict(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    if isinstance(result, dict):
        return result
    dump = getattr(result, "model_dump", None)
    if dump is not None:
        return dump(by_alias=True, mode="json", exclude_none=True)
    raise TypeError(f"unexpected handler result {type(result).__name__}")


class Walleot:
    """Charges per call for the priced tools of an `mcp` MCPServer.

    ```python
    from mcp.server.mcpserver import MCPServer
    from walleot import Walleot, Mode, price

    mcp = MCPServer("my-server")
    Walleot(mcp, apiKey=os.environ["WALLEOT_API_KEY"], mode=Mode.TWO_STEP)

    @mcp.tool()
    @price(0.50, "USD")
    async def premium_analysis(data: str) -> str: ...
    ```

    `baseUrl` is the service's address (default `WALLEOT_API_URL`, else
    http://127.0.0.1:8080), with or without `/v1`; `apiKey` defaults to
    `WALLEOT_API_KEY`. `store` keeps the pending payments: a `MemoryStore` of this
    process by default, a `RedisStore` to share them between processes.

    Each payment names its caller as the session's customer, so that a mandate the payer
    granted for it pays at once: the subject `identify` answers, and on stdio `customer`
    (default `WALLEOT_CUSTOMER`, else a reference made once and kept in
    `$WALLEOT_STATE_DIR/customer`, by default `~/.local/state/walleot/customer`).
    """

    def __init__(
        self,
        mcp: Any,
        apiKey: str | None = None,
        mode: Mode | str = Mode.TWO_STEP,
        baseUrl: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        identify: Callable[[Any], str | None] | None = None,
        payment_ttl: float = DEFAULT_PAYMENT_TTL,
        max_open_per_caller: int = DEFAULT_MAX_OPEN_PER_CALLER,
        max_open: int = DEFAULT_MAX_OPEN,
        poll_every: float = 20.0,
        wait_for_payment: float = 300.0,
        timeout: float = 10.0,
        store: PaymentStore | None = None,
        customer: str | None = None,
    ) -> None:
        self.mode = Mode.parse(mode)
        if self.mode not in SUPPORTED_MODES:
            supported = ", ".join(f"Mode.{m.name}" for m in SUPPORTED_MODES)
            raise NotImplementedError(
                f"Mode.{self.mode.name} is not supported yet by the walleot Python SDK; use one of {supported}"
            )
        key = apiKey or api_key or os.environ.get("WALLEOT_API_KEY")
        if not key:
            raise ValueError("no Walleot API key: pass apiKey=... or set WALLEOT_API_KEY")
        url = baseUrl or base_url or os.environ.get("WALLEOT_API_URL") or DEFAULT_API_URL
        middleware = getattr(mcp, "middleware", None)
        if not isinstance(middleware, list) or getattr(mcp, "_tool_manager", None) is None:
            raise TypeError(
                "Walleot(mcp, ...) takes the official mcp package's MCPServer "
                "(from mcp.server.mcpserver import MCPServer; mcp>=2.3)"
            )
        if not 60 <= payment_ttl <= 7 * 24 * 3600:
            raise ValueError("payment_ttl must be between 60 seconds and 7 days")
        self.mcp = mcp
        self.client = ServiceClient(url, key, timeout=timeout)
        self.store: PaymentStore = store if store is not None else MemoryStore()
        self.identify = identify
        if customer is not None and not _customer.is_valid(customer):
            log.warning("customer=%r is not 1 to 255 printable ASCII characters; it is not used", customer)
        #: The customer reference of a stdio server's one user.
        self.customer = _customer.resolve(customer)
        self.payment_ttl = int(payment_ttl)
        self.max_open_per_caller = max_open_per_caller
        self.max_open = max_open
        self.poll_every = poll_every
        self.wait_for_payment = wait_for_payment
        # Payments being opened right now, counted against the caps with the open ones.
        self._opening: dict[str, int] = {}
        # DYNAMIC_TOOLS: the open payments of each caller, by tool.
        self._open = OpenConfirms()
        # One settlement at a time per payment.
        self._settling: dict[str, asyncio.Lock] = {}
        self._process = uuid.uuid4().hex
        middleware.append(self._middleware)

    # Prices and tools, read at request time.

    def _tool(self, name: Any) -> Any:
        if not isinstance(name, str):
            return None
        return self.mcp._tool_manager.get_tool(name)

    def price_of(self, name: Any) -> Price | None:
        """The price of the tool named `name`, if it has one."""
        tool = self._tool(name)
        return price_of(tool.fn) if tool is not None else None

    def _confirmed_tool(self, name: Any) -> str | None:
        """The priced tool a confirm tool name stands for."""
        if self.mode == Mode.RESUBMIT or not isinstance(name, str):
            return None
        if not (name.startswith("confirm_") and name.endswith("_payment")):
            return None
        tool = name[len("confirm_") : -len("_payment")]
        return tool if tool and self.price_of(tool) is not None else None

    def _next_step(self, tool: str, flow: str | None = None) -> str:
        if self.mode == Mode.RESUBMIT:
            return f"call `{tool}` again with the same arguments and this payment_id"
        if flow == "input-required":
            return f"call `{tool}` again"
        if self.mode == Mode.DYNAMIC_TOOLS:
            return f"call `{confirm_tool_name(tool)}` (now in the tool list) with this payment_id"
        return f"call `{confirm_tool_name(tool)}` with this payment_id"

    @staticmethod
    def _elicitation(ctx: Any) -> Any:
        """The client's declared elicitation capability, if any."""
        capabilities = getattr(getattr(ctx, "session", None), "client_capabilities", None)
        return getattr(capabilities, "elicitation", None)

    def _flow(self, ctx: Any) -> str:
        """How this call gets paid: ELICITATION (chosen, or picked by AUTO) only where
        the client declares it, else two steps; on MCP 2026-07-28, which forbids server
        requests, elicitation is an input-required round trip."""
        if self.mode in (Mode.ELICITATION, Mode.AUTO):
            if self._elicitation(ctx) is None:
                return "two-step"
            if getattr(ctx, "protocol_version", None) in _MODERN:
                return "input-required"
            return "elicitation"
        return self.mode.value

    # Who is calling. Never anything the client can choose in `_meta`.

    def _caller(self, ctx: Any) -> Caller:
        subject = self.identify(ctx) if self.identify is not None else None
        if subject:
            return Caller(subject, f"subject:{subject}", _customer.of_subject(subject))
        request = getattr(ctx, "request", None)
        headers = getattr(request, "headers", None)
        if headers is not None:
            # HTTP: the MCP session, where there is one; else (stateless, and every
            # MCP 2026-07-28 request) the credential the client presents.
            session = headers.get("mcp-session-id")
            if session:
                return Caller(None, f"mcp-session:{session}")
            credential = headers.get("authorization")
            return Caller(None, credential_owner(credential) if credential else None)
        # stdio or in-process: a handshake connection keeps state of its own; a
        # process serving stdio serves one connection.
        connection = getattr(getattr(ctx, "session", None), "_connection", None)
        state = getattr(connection, "state", None)
        if isinstance(state, dict) and getattr(connection, "protocol_version", None) not in _MODERN:
            owner = state.setdefault("walleot_caller", f"connection:{uuid.uuid4().hex}")
            return Caller(None, owner, self.customer)
        return Caller(None, f"connection:{self._process}", self.customer)

    # The middleware.

    async def _middleware(self, ctx: Any, call_next: Handler) -> Any:
        method = getattr(ctx, "method", None)
        if method == "tools/list":
            return self._list_tools(ctx, _as_dict(await call_next(ctx)))
        if method == "initialize" and self.mode == Mode.DYNAMIC_TOOLS:
            # DYNAMIC_TOOLS changes tool lists: say so in the handshake's capabilities.
            result = dict(_as_dict(await call_next(ctx)))
            capabilities = dict(result.get("capabilities") or {})
            capabilities["tools"] = {**(capabilities.get("tools") or {}), "listChanged": True}
            result["capabilities"] = capabilities
            return result
        if method != "tools/call":
            return await call_next(ctx)
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        name = params.get("name")
        confirmed = self._confirmed_tool(name)
        price = self.price_of(name) if confirmed is None else None
        if confirmed is None and price is None:
            return await call_next(ctx)
        try:
            if confirmed is not None:
                answer = await self._confirm(confirmed, params, ctx, call_next)
            else:
                answer = await self._priced_call(name, price, params, ctx, call_next)
        except StoreError as e:
            # The tool's own errors are answered inside; this is the store failing.
            answer = answers.store_failure(e)
        answer = dict(answer)
        if getattr(ctx, "protocol_version", None) in _MODERN:
            answer.setdefault("resultType", "complete")
        return answer

    def _lists_confirm(self, tool: str, owner: str | None) -> bool:
        """Whether the confirm tool of `tool` is listed for `owner`: always, except in
        RESUBMIT (never) and DYNAMIC_TOOLS (while a payment of the caller's is open; an
        anonymous stateless caller, who cannot be told apart, always sees it)."""
        if self.mode == Mode.RESUBMIT:
            return False
        if self.mode == Mode.DYNAMIC_TOOLS and owner is not None:
            return self._open.is_open(owner, tool, time.time())
        return True

    def _list_tools(self, ctx: Any, listed: dict[str, Any]) -> dict[str, Any]:
        owner = self._caller(ctx).owner if self.mode == Mode.DYNAMIC_TOOLS else None
        tools = [dict(t) for t in listed.get("tools", [])]
        confirms = []
        for tool in tools:
            price = self.price_of(tool.get("name"))
            if price is None:
                continue
            tool["_meta"] = {**(tool.get("_meta") or {}), "price": price.meta()}
            if self.mode == Mode.RESUBMIT:
                schema = dict(tool.get("inputSchema") or {"type": "object"})
                properties = dict(schema.get("properties") or {})
                properties["payment_id"] = {
                    "type": "string",
                    "description": "The paymentId from the first call, once paid.",
                }
                schema["properties"] = properties
                tool["inputSchema"] = schema
            elif self._lists_confirm(tool["name"], owner):
                confirms.append(self._confirm_tool(tool["name"], price))
        return {**listed, "tools": tools + confirms}

    @staticmethod
    def _confirm_tool(tool: str, price: Price) -> dict[str, Any]:
        return {
            "name": confirm_tool_name(tool),
            "description": (
                f"Confirm the payment of {price.display()} for `{tool}` and run it with the arguments it was called with."
            ),
            "inputSchema": {
                "type": "object",
                "properties": {
                    "payment_id": {"type": "string", "description": "The paymentId answered by the paid tool."}
                },
                "required": ["payment_id"],
            },
        }

    # A priced call.

    def _invalid(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """Checks the arguments as the tool itself will, before any money is asked for."""
        found = self._tool(tool)
        metadata = getattr(found, "fn_metadata", None)
        if metadata is None:
            return None
        try:
            metadata.validate_arguments(arguments)
        except Exception as problem:  # pydantic's ValidationError, or a validator's own
            return answers.invalid_arguments(tool, str(problem))
        return None

    async def _priced_call(
        self, tool: str, price: Price, params: Mapping[str, Any], ctx: Any, call_next: Handler
    ) -> dict[str, Any]:
        caller = self._caller(ctx)
        raw = params.get("arguments")
        arguments = dict(raw) if isinstance(raw, Mapping) else {}
        payment_id = arguments.pop("payment_id", None) if self.mode == Mode.RESUBMIT else None
        if payment_id is not None:
            pending = await self._payment_for_call(payment_id, tool, caller, arguments)
            if isinstance(pending, dict):
                return pending
            return await self._run_paid(pending, self._next_step(tool), ctx, call_next)
        flow = self._flow(ctx)
        state = params.get("requestState")
        if self.mode in (Mode.ELICITATION, Mode.AUTO) and isinstance(state, str) and state.startswith(_STATE_PREFIX):
            return await self._input_returned(tool, arguments, caller, state, params, ctx, call_next)
        invalid = self._invalid(tool, arguments)
        if invalid is not None:
            return invalid
        started = await self._start_payment(tool, arguments, price, caller)
        if isinstance(started, dict):
            return started
        pending, covered = started
        if covered is not None:
            # Paid at creation under the payer's mandate: it runs now, in this call.
            if self.mode == Mode.RESUBMIT:
                next_step = self._next_step(tool)
            else:
                next_step = f"call `{confirm_tool_name(tool)}` with this payment_id"
            answer = await self._run_paid(pending, next_step, ctx, call_next, seen=covered)
            return answers.paid_under_mandate(answer, pending, covered.get("mandateId"))
        next_step = self._next_step(tool, flow)
        if flow == "progress":
            return await self._progress_call(pending, next_step, params, ctx, call_next)
        if flow == "elicitation":
            return await self._elicitation_call(pending, next_step, params, ctx, call_next)
        if flow == "input-required":
            return self._input_required(pending, ctx)
        if flow == "dynamic-tools" and caller.owner is not None:
            if self._open.open(caller.owner, tool, pending.payment_id, pending.expires_unix, time.time()):
                await self._announce_tool_list_change(ctx)
        return answers.payment_required(pending, price, next_step)

    async def _start_payment(
        self, tool: str, arguments: dict[str, Any], price: Price, caller: Caller
    ) -> tuple[PendingPayment, dict[str, Any] | None] | dict[str, Any]:
        """Opens a payment: a manual-capture session and a secret payment id, within
        the caps on open payments (checked before the service is asked). With it, the
        session when a mandate of the payer paid it at creation; else the refusal."""
        now = time.time()
        owner = caller.owner or ""
        try:
            mine, total = await self.store.open_counts(owner, now)
        except Exception as e:
            return answers.store_failure(e)
        mine += self._opening.get(owner, 0) if caller.owner else 0
        total += sum(self._opening.values())
        if caller.owner is not None and mine >= self.max_open_per_caller:
            return self._too_many("owner", mine)
        if total >= self.max_open:
            return self._too_many("total", mine)
        self._opening[owner] = self._opening.get(owner, 0) + 1
        try:
            session = await self.client.create_session(
                price.minor,
                price.currency,
                f"Tool call: {tool}",
                self.payment_ttl,
                metadata=binding_metadata(tool, arguments_hash(arguments)),
                customer=caller.customer,
            )
        except ServiceError as e:
            return answers.service_failure(e)
        finally:
            self._opening[owner] -= 1
            if not self._opening[owner]:
                del self._opening[owner]
        pending = PendingPayment(
            payment_id=new_payment_id(),
            session_id=session["sessionId"],
            payment_url=session["url"],
            tool=tool,
            arguments=arguments,
            arguments_hash=arguments_hash(arguments),
            price=price,
            subject=caller.subject,
            owner=owner,
            expires_at=session.get("expiresAt", ""),
            expires_unix=now + self.payment_ttl,
        )
        try:
            # The caps again, atomically with the put: other processes sharing the
            # store may have opened payments since the counts above.
            await self.store.put(
                pending,
                max_open_per_owner=self.max_open_per_caller if caller.owner is not None else None,
                max_open=self.max_open,
            )
        except Exception as e:
            # Not kept, so nobody could confirm it: nobody must pay it either (and what a
            # mandate paid already goes back to it).
            try:
                if session.get("status") == "paid":
                    await self.client.release_session(pending.session_id)
                else:
                    await self.client.cancel_session(pending.session_id)
            except ServiceError:
                pass
            if isinstance(e, TooManyOpen):
                return self._too_many(e.scope, e.mine)
            if isinstance(e, StoreFull):
                return answers.refusal(
                    "too many payments are open on this server; try again later. Nothing was charged."
                )
            return answers.store_failure(e)
        covered = session if session.get("status") == "paid" and session.get("mandateId") else None
        return pending, covered

    def _too_many(self, scope: str, mine: int) -> dict[str, Any]:
        """The refusal when a cap on open payments is reached ("owner" or "total")."""
        minutes = -(-self.payment_ttl // 60)
        if scope == "owner":
            return answers.refusal(
                f"{mine} unpaid payments are open for this caller, the most allowed: pay one of them, "
                f"or call again once they expire (within {minutes} min). Nothing was charged."
            )
        return answers.refusal(
            f"too many unpaid payments are open on this server; try again within {minutes} min. Nothing was charged."
        )

    async def _payment_for(self, payment_id: Any, tool: str, caller: Caller) -> PendingPayment | dict[str, Any]:
        """The payment the caller may use for `tool`, or the refusal to answer. Without
        a subject, holding the secret payment id is the right to confirm."""
        if not isinstance(payment_id, str):
            return answers.refusal("`payment_id` (a string) is required")
        try:
            found = await self.store.get(payment_id)
        except Exception as e:
            return answers.store_failure(e)
        if found is None:
            return answers.unknown_payment(tool)
        pending = found.payment
        # Another tool's or another subject's payment reads as unknown.
        if pending.tool != tool or (pending.subject is not None and pending.subject != caller.subject):
            return answers.unknown_payment(tool)
        return pending

    async def _payment_for_call(
        self, payment_id: Any, tool: str, caller: Caller, arguments: dict[str, Any]
    ) -> PendingPayment | dict[str, Any]:
        pending = await self._payment_for(payment_id, tool, caller)
        if isinstance(pending, PendingPayment) and pending.arguments_hash != arguments_hash(arguments):
            return answers.refusal("this payment was made for other arguments; it cannot pay for this call")
        return pending

    async def _confirm(self, tool: str, params: Mapping[str, Any], ctx: Any, call_next: Handler) -> dict[str, Any]:
        """`confirm_<tool>_payment(payment_id)`: runs the paid call once."""
        raw = params.get("arguments")
        arguments = raw if isinstance(raw, Mapping) else {}
        pending = await self._payment_for(arguments.get("payment_id"), tool, self._caller(ctx))
        if isinstance(pending, dict):
            return pending
        answer = await self._run_paid(pending, f"call `{confirm_tool_name(tool)}` with this payment_id", ctx, call_next)
        if self.mode == Mode.DYNAMIC_TOOLS and pending.owner:
            # The confirm tool goes once its result is handed out or the payment ended
            # unpaid; a confirmation is still accepted after that.
            try:
                found = await self.store.get(pending.payment_id)
            except StoreError:
                found = None  # the answer stands; the tool list is advisory
            delivered = found is not None and found.state == DONE
            ended = (answer.get("structuredContent") or {}).get("status") == "refused"
            if (delivered or ended) and self._open.close(pending.owner, tool, pending.payment_id, time.time()):
                await self._announce_tool_list_change(ctx)
        return answer

    async def _announce_tool_list_change(self, ctx: Any) -> None:
        """Tells the client its tool list changed: a notification on MCP 2025-11-25, an
        event on the `subscriptions/listen` streams on 2026-07-28."""
        try:
            if getattr(ctx, "protocol_version", None) in _MODERN:
                from mcp.shared.subscriptions import ToolsListChanged

                await self.mcp._subscriptions.publish(ToolsListChanged())
            else:
                await ctx.session.send_tool_list_changed()
        except Exception as e:  # advisory: the list itself is always right
            log.info("announcing a tool list change failed: %r", e)

    # The life of a paid payment: checked, claimed once, run, settled, handed out.

    def _check_paid(self, pending: PendingPayment, next_step: str, session: Mapping[str, Any]) -> dict[str, Any] | None:
        if session.get("amount") != pending.price.minor or str(session.get("currency", "")).upper() != pending.price.currency:
            return answers.refusal("the payment does not match this tool's price")
        if session.get("metadata") != binding_metadata(pending.tool, pending.arguments_hash):
            return answers.refusal("the payment was made for another tool call; it cannot pay for this one")
        status = session.get("status")
        if status == "paid" and session.get("captureStatus") in (None, "held", "captured"):
            return None
        if status == "pending":
            return answers.payment_required(pending, pending.price, next_step, "pending")
        return answers.refusal(
            f"the payment is {status}; nothing was charged. Call `{pending.tool}` again for a new payment link."
        )

    async def _run_paid(
        self,
        pending: PendingPayment,
        next_step: str,
        ctx: Any,
        call_next: Handler,
        seen: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Runs the tool of a paid payment once: checks the payment with the service (or
        the session just `seen`, such as the one a mandate paid at creation), claims it, runs the tool, captures the held funds after success (or releases
        them after failure), and hands out and keeps the result once that is done."""
        found = await self.store.get(pending.payment_id)
        if found is None:
            return answers.unknown_payment(pending.tool)
        if found.state == DONE:
            return found.result
        if found.state == RAN:
            return await self._settle_and_answer(pending, found.result, found.succeeded, next_step)
        if found.state == RUNNING:
            return await self._wait_for_result(pending, next_step)
        if seen is not None:
            session = seen
        else:
            try:
                session = await self.client.get_session(pending.session_id)
            except ServiceError as e:
                return answers.service_failure(e)
        refused = self._check_paid(pending, next_step, session)
        if refused is not None:
            return refused
        claimed = await self.store.claim(pending.payment_id)
        if claimed is None:
            return answers.unknown_payment(pending.tool)
        if claimed.state == DONE:
            return claimed.result
        if claimed.state == RAN:
            return await self._settle_and_answer(pending, claimed.result, claimed.succeeded, next_step)
        if claimed.state == RUNNING:
            return await self._wait_for_result(pending, next_step)
        result, succeeded = await self._run_tool(pending, ctx, call_next)
        try:
            await self.store.ran(pending.payment_id, result, succeeded)
        except StoreError as e:
            # The tool ran and the payer paid: settle and hand out the result all the
            # same. Only a repeated confirmation misses what the store did not keep.
            log.warning("the payment store did not keep the result of %s: %r", pending.payment_id, e)
        return await self._settle_and_answer(pending, result, succeeded, next_step)

    async def _run_tool(self, pending: PendingPayment, ctx: Any, call_next: Handler) -> tuple[dict[str, Any], bool]:
        """The tool through the rest of the server's own pipeline, with the arguments
        the payment was made for."""
        params = {
            k: v for k, v in (ctx.params or {}).items() if k not in ("requestState", "inputResponses", "arguments")
        }
        params["name"] = pending.tool
        params["arguments"] = pending.arguments
        try:
            result = _as_dict(await call_next(dataclasses.replace(ctx, params=params)))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # an MCP error the tool raised, or a server failure
            log.warning("paid tool %s failed: %r", pending.tool, e)
            message = getattr(e, "message", None) or f"Error executing tool {pending.tool}"
            return answers.tool_failure(str(message)), False
        if result.get("resultType") == "input_required":
            return answers.tool_failure("the tool asked for more input, which a paid call cannot give it"), False
        return result, not result.get("isError", False)

    async def _settle_and_answer(
        self, pending: PendingPayment, result: dict[str, Any], succeeded: bool, next_step: str
    ) -> dict[str, Any]:
        """Settles a payment whose tool ran, then answers: the result once captured, a
        "being settled" answer while the service does not capture, a refusal if the
        hold lapsed first. One settlement of a payment at a time in this process."""
        lock = self._settling.setdefault(pending.payment_id, asyncio.Lock())
        async with lock:
            try:
                found = await self.store.get(pending.payment_id)
            except StoreError:
                found = None  # settle anyway: a capture under its key is never doubled
            if found is not None and found.state == DONE:
                return found.result
            answer = await self._settle_once(pending, result, succeeded, next_step)
        if not lock.locked() and self._settling.get(pending.payment_id) is lock:
            del self._settling[pending.payment_id]
        return answer

    async def _settle_once(
        self, pending: PendingPayment, result: dict[str, Any], succeeded: bool, next_step: str
    ) -> dict[str, Any]:
        outcome, wait = await self._settle(pending, succeeded)
        if outcome == "settled":
            await self._finish(pending, result, succeeded)
            return result
        if outcome == "later" and not succeeded:
            # A failed tool's answer costs nothing; the next confirmation retries the release.
            return result
        if outcome == "later":
            return answers.settling(pending, wait, next_step)
        refused = answers.refusal(
            "the payer's held funds lapsed before the payment could be captured: nothing was charged, and the "
            f"result is not handed out. Call `{pending.tool}` again for a new payment link."
        )
        await self._finish(pending, refused, False)
        return refused

    async def _finish(self, pending: PendingPayment, result: dict[str, Any], succeeded: bool) -> None:
        """Keeps a settled result; a store that fails then costs only repeated confirms."""
        try:
            await self.store.finish(pending.payment_id, result, succeeded)
        except StoreError as e:
            log.warning("the payment store did not keep the settled result of %s: %r", pending.payment_id, e)

    async def _settle(self, pending: PendingPayment, capture: bool) -> tuple[str, float]:
        """Captures (or releases) the held funds, retrying briefly under one
        idempotency key; a longer wait is left to the next confirmation."""
        action = "capture" if capture else "release"
        key = f"walleot-{action}-{pending.session_id}"
        settle = self.client.capture_session if capture else self.client.release_session
        backoff = 0.2
        for attempt in range(1, _SETTLE_ATTEMPTS + 1):
            try:
                await settle(pending.session_id, key)
                return "settled", 0.0
            except ServiceError as e:
                error = e
            if error.status in (404, 409):  # the hold ended some other way: see how
                try:
                    session = await self.client.get_session(pending.session_id)
                except ServiceError as e:
                    return "later", float(e.retry_after if e.retry_after is not None else backoff)
                if session.get("captureStatus") == "captured" or not capture:
                    return "settled", 0.0
                if session.get("captureStatus") != "held":
                    return "lapsed", 0.0
                # Still held: a race, not an end. Another process sharing the store may be
                # capturing under the same key right now; its answer is soon replayed.
                if attempt == _SETTLE_ATTEMPTS:
                    return "later", backoff
                await asyncio.sleep(backoff)
                backoff *= 2
                continue
            if error.status is not None and error.status != 429 and error.status < 500:
                log.warning("the service refused to %s payment %s: %s", action, pending.session_id, error)
                return "later", 60.0
            wait = float(error.retry_after) if error.retry_after is not None else backoff
            log.warning("%s of payment %s failed (attempt %d): %s", action, pending.session_id, attempt, error)
            if attempt == _SETTLE_ATTEMPTS or wait > _LONGEST_INLINE_WAIT:
                return "later", wait
            await asyncio.sleep(wait)
            backoff *= 2
        return "later", backoff

    async def _wait_for_result(self, pending: PendingPayment, next_step: str) -> dict[str, Any]:
        """A concurrent confirmation is running the tool: wait for its result."""
        deadline = time.monotonic() + self.wait_for_payment
        while time.monotonic() < deadline:
            found = await self.store.get(pending.payment_id)
            if found is not None and found.state == DONE:
                return found.result
            if found is not None and found.state == RAN:
                # The run is over: settle (after the runner's own settlement, if any).
                return await self._settle_and_answer(pending, found.result, found.succeeded, next_step)
            await asyncio.sleep(0.05)
        return answers.refusal("the paid tool is still running; confirm again in a moment to get its result")

    # PROGRESS: the link streams in progress notifications while the call waits.

    async def _progress_call(
        self, pending: PendingPayment, next_step: str, params: Mapping[str, Any], ctx: Any, call_next: Handler
    ) -> dict[str, Any]:
        meta = params.get("_meta")
        if not isinstance(meta, Mapping) or meta.get("progressToken") is None:
            return answers.payment_required(pending, pending.price, next_step)
        message = f"Payment of {pending.price.display()} required: open {pending.payment_url}"
        waited = await self._await_payment(pending, next_step, ctx, self.wait_for_payment, message)
        if waited is not None:
            return waited
        return await self._run_paid(pending, next_step, ctx, call_next)

    async def _await_payment(
        self, pending: PendingPayment, next_step: str, ctx: Any, wait: float, message: str
    ) -> dict[str, Any] | None:
        """Waits until the payer has paid, within `wait`, with long polls of the service
        (a payment is seen as soon as it is made), reporting progress before each poll
        so that clients do not time out. None once paid; else the answer to give."""
        deadline = time.monotonic() + wait
        step = 0.0
        while True:
            step += 1
            try:
                await ctx.session.report_progress(step, None, message)
            except asyncio.CancelledError:
                raise
            except Exception:  # the client no longer takes progress: it has gone
                return answers.payment_required(pending, pending.price, next_step, "pending")
            left = deadline - time.monotonic()
            poll = min(left, max(self.poll_every, 1.0))
            try:
                if poll < 1:
                    session = await self.client.get_session(pending.session_id)
                else:
                    session = await self.client.wait_session(pending.session_id, poll)
            except ServiceError as e:
                if time.monotonic() >= deadline:
                    return answers.service_failure(e)
                pause = min(float(e.retry_after) if e.retry_after is not None else 1.0, max(deadline - time.monotonic(), 0))
                await asyncio.sleep(pause)
                session = None
            if session is not None:
                status = session.get("status")
                if status == "paid":
                    return None
                if status != "pending":
                    return answers.refusal(f"the payment is {status}; nothing was charged")
            if time.monotonic() >= deadline:
                return answers.payment_required(pending, pending.price, next_step, "pending")

    # ELICITATION and AUTO: the client is asked to show the link.

    def _elicitation_request(self, pending: PendingPayment, url_mode: bool) -> dict[str, Any]:
        """What the client is asked to show: the payment link (URL elicitation where it
        declares that mode), else a form whose `paid` box the payer ticks once done."""
        message = f"`{pending.tool}` costs {pending.price.display()}. Pay at {pending.payment_url}"
        if url_mode:
            params = {
                "mode": "url",
                "message": message,
                "url": pending.payment_url,
                "elicitationId": pending.payment_id,
            }
        else:
            params = {
                "mode": "form",
                "message": f"{message}, then confirm here.",
                "requestedSchema": {
                    "type": "object",
                    "properties": {"paid": {"type": "boolean", "title": "I have paid"}},
                    "required": ["paid"],
                },
            }
        return {"method": "elicitation/create", "params": params}

    async def _declined(self, pending: PendingPayment) -> dict[str, Any]:
        """The payer declined: the session is cancelled, so nothing will be paid."""
        try:
            await self.client.cancel_session(pending.session_id)
        except ServiceError as e:
            log.warning("cancelling a declined payment failed: %s", e)
        return answers.refusal("the payer declined the payment; nothing was charged")

    async def _elicitation_call(
        self, pending: PendingPayment, next_step: str, params: Mapping[str, Any], ctx: Any, call_next: Handler
    ) -> dict[str, Any]:
        """MCP 2025-11-25: asks the client to show the link, waits for the payer, and runs
        the tool in the same call. A dismissed request, a timeout or a payment still open
        gets the two-step answer; the link stays payable."""
        fallback = answers.payment_required(pending, pending.price, next_step)
        url_mode = getattr(self._elicitation(ctx), "url", None) is not None
        session = ctx.session
        if not getattr(session, "can_send_request", True):
            # Stateless HTTP: no way to send the elicitation. A URL-capable client is
            # told which URL to open (error -32042 of MCP 2025-11-25); others get two steps.
            if url_mode:
                from mcp.shared.exceptions import UrlElicitationRequiredError
                from mcp_types import ElicitRequestURLParams

                raise UrlElicitationRequiredError(
                    [
                        ElicitRequestURLParams(
                            message=f"`{pending.tool}` costs {pending.price.display()}",
                            url=pending.payment_url,
                            elicitation_id=pending.payment_id,
                        )
                    ],
                    "URL elicitation required: open the payment link, then call the tool again",
                )
            return fallback
        request = self._elicitation_request(pending, url_mode)["params"]
        try:
            with anyio_fail_after(self.wait_for_payment):
                if url_mode:
                    answer = await session.elicit_url(
                        request["message"], request["url"], request["elicitationId"], related_request_id=ctx.request_id
                    )
                else:
                    answer = await session.elicit_form(
                        request["message"], request["requestedSchema"], related_request_id=ctx.request_id
                    )
        except asyncio.CancelledError:
            raise
        except Exception as e:  # no answer in time, or the client refused the request
            log.info("elicitation for payment %s got no answer: %r", pending.session_id, e)
            return fallback
        action = getattr(answer, "action", None)
        if action == "decline":
            return await self._declined(pending)
        if action != "accept":  # dismissed by the client: the link stays payable
            return fallback
        content = getattr(answer, "content", None) or {}
        wait = 0.0 if content.get("paid") is False else self.wait_for_payment
        message = f"Waiting for the payment of {pending.price.display()} at {pending.payment_url}"
        waited = await self._await_payment(pending, next_step, ctx, wait, message)
        if waited is not None:
            return waited
        if url_mode:
            try:
                await session.send_elicit_complete(pending.payment_id, related_request_id=ctx.request_id)
            except Exception:
                pass
        return await self._run_paid(pending, next_step, ctx, call_next)

    def _input_required(self, pending: PendingPayment, ctx: Any) -> dict[str, Any]:
        """MCP 2026-07-28: the call answers an input-required result asking the client to
        show the link; the payment travels in the request state, which the server's
        RequestStateBoundary seals to this tool and these arguments."""
        url_mode = getattr(self._elicitation(ctx), "url", None) is not None
        return {
            "resultType": "input_required",
            "inputRequests": {"payment": self._elicitation_request(pending, url_mode)},
            "requestState": _STATE_PREFIX + pending.payment_id,
        }

    async def _input_returned(
        self,
        tool: str,
        arguments: dict[str, Any],
        caller: Caller,
        state: str,
        params: Mapping[str, Any],
        ctx: Any,
        call_next: Handler,
    ) -> dict[str, Any]:
        """The retry of an input-required round trip: the payer's answer and the payment."""
        pending = await self._payment_for_call(state[len(_STATE_PREFIX) :], tool, caller, arguments)
        if isinstance(pending, dict):
            return pending
        responses = params.get("inputResponses")
        answer = responses.get("payment") if isinstance(responses, Mapping) else None
        answer = answer if isinstance(answer, Mapping) else {}
        action = answer.get("action")
        if action == "decline":
            return await self._declined(pending)
        if action != "accept":  # dismissed without an answer: the link stays payable
            return answers.payment_required(pending, pending.price, self._next_step(tool))
        content = answer.get("content") if isinstance(answer.get("content"), Mapping) else {}
        wait = 0.0 if content.get("paid") is False else self.wait_for_payment
        next_step = self._next_step(tool, "input-required")
        message = f"Waiting for the payment of {pending.price.display()} at {pending.payment_url}"
        waited = await self._await_payment(pending, next_step, ctx, wait, message)
        if waited is not None:
            return waited
        return await self._run_paid(pending, next_step, ctx, call_next)
