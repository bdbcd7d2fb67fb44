"""The answers a priced tool gives instead of its result: a payment request, a
refusal, a settlement still under way, a service that could not help.

Every one of them is a tool result with `isError: true`, in every mode: the tool's
work was not handed out, and a client or agent that looks only at `isError` must never
mistake a payment link for the tool's answer. `structuredContent.status` tells them
apart. Answers are wire-form dicts (camelCase), as a tools/call result is sent.
"""

from __future__ import annotations

import logging
from typing import Any

from ._client import ServiceError
from ._price import Price
from ._store import PendingPayment

log = logging.getLogger("walleot")


def _result(text: str, structured: dict[str, Any]) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": structured,
        "isError": True,
    }


def payment_required(p: PendingPayment, price: Price, next_step: str, status: str = "payment_required") -> dict[str, Any]:
    """The request for payment; `status` is `payment_required` for a new payment and
    `pending` for one the payer has not paid yet."""
    structured = {
        "status": status,
        "paymentId": p.payment_id,
        "paymentUrl": p.payment_url,
        "amount": price.major_number(),
        "amountMinor": price.minor,
        "currency": price.currency.upper(),
        "expiresAt": p.expires_at,
        "tool": p.tool,
        "nextStep": next_step,
    }
    if status == "pending":
        text = (
            f"The payment of {price.display()} is not completed yet. Open {p.payment_url} to pay, "
            f"then {next_step}. payment_id: {p.payment_id}"
        )
    else:
        text = (
            f"`{p.tool}` costs {price.display()}. Open {p.payment_url} to pay, then {next_step}. "
            f"payment_id: {p.payment_id}"
        )
    return _result(text, structured)


def paid_under_mandate(answer: dict[str, Any], p: PendingPayment, mandate_id: str | None) -> dict[str, Any]:
    """A result paid under a mandate says so in its `_meta.payment`: the payment id (kept
    for a repeated confirmation), the amount charged and the mandate."""
    meta = answer.get("_meta")
    return {
        **answer,
        "_meta": {
            **(meta if isinstance(meta, dict) else {}),
            "payment": {
                "paymentId": p.payment_id,
                "amount": p.price.major_number(),
                "amountMinor": p.price.minor,
                "currency": p.price.currency.upper(),
                "mandateId": mandate_id,
            },
        },
    }


def settling(p: PendingPayment, retry_in: float, next_step: str) -> dict[str, Any]:
    """The tool ran and the payer approved, but the held funds are not captured yet:
    the result waits until they are."""
    secs = max(int(retry_in + 0.999), 1)
    message = (
        f"The payment for `{p.tool}` is being settled (the payment service asked to wait); "
        f"the result is kept: in {secs} s, {next_step} again to get it."
    )
    return _result(message, {"status": "settling", "paymentId": p.payment_id, "retryAfter": secs, "message": message})


def refusal(message: str) -> dict[str, Any]:
    return _result(message, {"status": "refused", "message": message})


def unknown_payment(tool: str) -> dict[str, Any]:
    """A payment id this server does not know, or knows for another tool or caller
    (those read the same, so nothing about them is revealed)."""
    return refusal(
        f"unknown payment_id for `{tool}`: this server does not know it (it may have restarted, or the payment expired). "
        "Nothing is charged for it: funds a payer approved are only held, and return to the payer by themselves "
        f"at the hold deadline. Call `{tool}` again for a new payment link."
    )


def service_failure(error: ServiceError) -> dict[str, Any]:
    """The payment service did not help: unreachable, failing or rate limited. Its
    address and details go to the log, not to the client."""
    if error.status == 429:
        secs = max(error.retry_after or 60, 1)
        log.warning("the payment service is rate limiting this server: %s", error)
        message = f"rate limited by the payment service, retry in {secs} s"
        return _result(
            f"{message}; nothing was charged",
            {"status": "rate_limited", "retryAfter": secs, "message": message},
        )
    if error.status is None:
        message = "the payment service could not be reached; nothing was charged, try again"
    elif error.status >= 500:
        message = "the payment service failed; nothing was charged, try again"
    else:
        message = "the payment service refused the request; nothing was charged"
    log.warning("a call to the payment service failed: %s", error)
    return _result(message, {"status": "error", "message": message})


def store_failure(error: Exception) -> dict[str, Any]:
    log.warning("the payment store failed: %r", error)
    message = "the server could not keep the payment; nothing was charged, try again"
    return _result(message, {"status": "error", "message": message})


def tool_failure(text: str) -> dict[str, Any]:
    """A paid tool that failed in a way the server turned into an exception."""
    return {"content": [{"type": "text", "text": text}], "isError": True}


def invalid_arguments(tool: str, problem: str) -> dict[str, Any]:
    """Arguments the tool would refuse: the tool's own error, before any money is asked for."""
    return {
        "content": [
            {"type": "text", "text": f"Error executing tool {tool}: {problem}"},
            {"type": "text", "text": "invalid arguments; nothing was charged"},
        ],
        "isError": True,
    }
