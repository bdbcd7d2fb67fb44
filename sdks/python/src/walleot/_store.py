"""Pending payments: what a payment was opened for, and whether its tool ran.

A payment is bound to the tool, its price, a canonical hash of the arguments and,
where the server names one, the authenticated subject. Its state moves
AWAITING -> RUNNING -> RAN -> DONE once, so the tool runs at most once per payment.
RAN holds a result whose payment is not settled yet: it is handed out only once the
held funds are captured. DONE keeps the result for repeated confirmations.

Nothing is kept for ever: an unpaid payment is dropped a day after its link expired
(a payer may have paid just before), a kept result a day after it was made, and the
store keeps within a byte budget, so abandoned calls cannot grow the server.

`PaymentStore` is the async interface a store implements; `MemoryStore` keeps the
payments of one process, `RedisStore` (in `_redis`) those of several. The store
applies each step atomically or reports that its precondition no longer holds (a
payment claimed already, a cap reached); the rules live in `_core`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._price import Price

AWAITING = "awaiting"
RUNNING = "running"
RAN = "ran"
DONE = "done"


def arguments_hash(arguments: dict[str, Any]) -> str:
    """SHA-256 (hex) of the arguments as JSON with sorted keys at every depth and no
    spaces: the same arguments in any order hash the same, as in walleot-mcp."""
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class PendingPayment:
    #: The secret handed to the MCP client (192 random bits): whoever holds it may
    #: confirm, subject to `subject`. It never appears in the checkout link.
    payment_id: str
    #: The Walleot session that collects the money.
    session_id: str
    payment_url: str
    tool: str
    arguments: dict[str, Any]
    arguments_hash: str
    price: Price
    #: The authenticated subject it is bound to, where the server names one.
    subject: str | None
    #: Who opened it, for the per-caller cap: subject, MCP session or connection.
    owner: str
    #: When the link expires unpaid: RFC 3339 as the service gave it, and Unix seconds.
    expires_at: str
    expires_unix: float


@dataclass
class _Entry:
    payment: PendingPayment
    state: str = AWAITING
    result: dict[str, Any] | None = None
    succeeded: bool = False
    ran_at: float = field(default_factory=time.time)
    weight: int = 0

    def weigh(self) -> None:
        size = len(json.dumps(self.payment.arguments, default=str))
        if self.result is not None:
            size += len(json.dumps(self.result, default=str))
        self.weight = size + 512

    def kept(self, now: float, after_expiry: float, results: float) -> bool:
        if self.state == AWAITING:
            return now < self.payment.expires_unix + after_expiry
        if self.state == DONE:
            return now < self.ran_at + results
        # A run in flight, or a paid result still to settle: never dropped.
        return True


class StoreError(Exception):
    """The payment store failed or refused: the step it was asked for did not happen."""


class StoreFull(StoreError):
    """The store keeps no more: the payment was not kept."""


class TooManyOpen(StoreError):
    """A cap on open payments was reached when the payment was to be kept: it was not.
    `scope` is "owner" (the caller's cap) or "total" (the server's)."""

    def __init__(self, scope: str, mine: int, total: int) -> None:
        super().__init__(f"too many open payments ({scope}): {mine} of the owner's, {total} in all")
        self.scope, self.mine, self.total = scope, mine, total


@dataclass
class Snapshot:
    payment: PendingPayment
    state: str
    result: dict[str, Any] | None
    succeeded: bool


class PaymentStore(Protocol):
    """Where pending payments are kept. Every method is a coroutine, so that a store
    on the network never blocks the event loop; failures raise `StoreError`."""

    async def put(
        self,
        payment: PendingPayment,
        now: float | None = None,
        *,
        max_open_per_owner: int | None = None,
        max_open: int | None = None,
    ) -> None:
        """Keeps a new payment, unless the owner already has `max_open_per_owner` open
        or everyone `max_open` (`TooManyOpen`), or there is no room (`StoreFull`)."""
        ...

    async def get(self, payment_id: str, now: float | None = None) -> Snapshot | None: ...

    async def open_counts(self, owner: str, now: float | None = None) -> tuple[int, int]:
        """Unpaid payments whose links are still open: (the owner's, everyone's)."""
        ...

    async def claim(self, payment_id: str) -> Snapshot | None:
        """AWAITING -> RUNNING, atomically. Answers the state found before: AWAITING
        means this caller runs the tool; None means the payment is unknown."""
        ...

    async def ran(self, payment_id: str, result: dict[str, Any], succeeded: bool, now: float | None = None) -> None:
        """RUNNING -> RAN: the tool ran, its payment is not settled yet."""
        ...

    async def finish(self, payment_id: str, result: dict[str, Any], succeeded: bool, now: float | None = None) -> None:
        """RAN -> DONE: settled; the result is kept for repeated confirmations."""
        ...


class MemoryStore:
    """Payments in this process's memory, within a byte budget (64 MiB by default).
    Its coroutines never wait: each step is done under a lock before it returns."""

    def __init__(
        self,
        budget_bytes: int = 64 << 20,
        after_expiry_seconds: float = 24 * 3600,
        results_seconds: float = 24 * 3600,
    ) -> None:
        self._entries: dict[str, _Entry] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.budget = budget_bytes
        self.after_expiry = after_expiry_seconds
        self.results = results_seconds

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _remove(self, payment_id: str) -> None:
        entry = self._entries.pop(payment_id, None)
        if entry is not None:
            self._bytes -= entry.weight

    def _make_room(self, now: float, budget: int) -> None:
        stale = [i for i, e in self._entries.items() if not e.kept(now, self.after_expiry, self.results)]
        for payment_id in stale:
            self._remove(payment_id)
        if self._bytes <= budget:
            return
        # Expired unpaid payments first, then kept results, oldest first.
        evictable = sorted(
            (0 if e.state == AWAITING else 1, e.payment.expires_unix if e.state == AWAITING else e.ran_at, i)
            for i, e in self._entries.items()
            if (e.state == AWAITING and e.payment.expires_unix <= now) or e.state == DONE
        )
        for _, _, payment_id in evictable:
            if self._bytes <= budget:
                break
            self._remove(payment_id)

    def _open_counts(self, owner: str, now: float) -> tuple[int, int]:
        mine = total = 0
        for entry in self._entries.values():
            if entry.state == AWAITING and entry.payment.expires_unix > now:
                total += 1
                if entry.payment.owner == owner:
                    mine += 1
        return mine, total

    async def put(
        self,
        payment: PendingPayment,
        now: float | None = None,
        *,
        max_open_per_owner: int | None = None,
        max_open: int | None = None,
    ) -> None:
        now = time.time() if now is None else now
        entry = _Entry(payment=payment, ran_at=now)
        entry.weigh()
        with self._lock:
            if max_open_per_owner is not None or max_open is not None:
                mine, total = self._open_counts(payment.owner, now)
                if max_open_per_owner is not None and mine >= max_open_per_owner:
                    raise TooManyOpen("owner", mine, total)
                if max_open is not None and total >= max_open:
                    raise TooManyOpen("total", mine, total)
            self._make_room(now, max(self.budget - entry.weight, 0))
            if self._bytes + entry.weight > self.budget:
                raise StoreFull()
            self._bytes += entry.weight
            self._entries[payment.payment_id] = entry

    async def get(self, payment_id: str, now: float | None = None) -> Snapshot | None:
        now = time.time() if now is None else now
        with self._lock:
            entry = self._entries.get(payment_id)
            if entry is None or not entry.kept(now, self.after_expiry, self.results):
                return None
            return Snapshot(entry.payment, entry.state, entry.result, entry.succeeded)

    async def open_counts(self, owner: str, now: float | None = None) -> tuple[int, int]:
        """Unpaid payments whose links are still open: (the owner's, everyone's)."""
        now = time.time() if now is None else now
        with self._lock:
            return self._open_counts(owner, now)

    async def claim(self, payment_id: str) -> Snapshot | None:
        """AWAITING -> RUNNING, atomically. Answers the state found before: AWAITING
        means this caller runs the tool; None means the payment is unknown."""
        with self._lock:
            entry = self._entries.get(payment_id)
            if entry is None:
                return None
            found = Snapshot(entry.payment, entry.state, entry.result, entry.succeeded)
            if entry.state == AWAITING:
                entry.state = RUNNING
            return found

    def _set(self, payment_id: str, state: str, result: dict[str, Any], succeeded: bool, now: float | None) -> None:
        with self._lock:
            entry = self._entries.get(payment_id)
            if entry is None:
                return
            self._bytes -= entry.weight
            entry.state, entry.result, entry.succeeded = state, result, succeeded
            entry.ran_at = time.time() if now is None else now
            entry.weigh()
            self._bytes += entry.weight

    async def ran(self, payment_id: str, result: dict[str, Any], succeeded: bool, now: float | None = None) -> None:
        """RUNNING -> RAN: the tool ran, its payment is not settled yet."""
        self._set(payment_id, RAN, result, succeeded, now)

    async def finish(self, payment_id: str, result: dict[str, Any], succeeded: bool, now: float | None = None) -> None:
        """RAN -> DONE: settled; the result is kept for repeated confirmations."""
        self._set(payment_id, DONE, result, succeeded, now)
