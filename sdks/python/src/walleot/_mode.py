"""How server and client coordinate a payment."""

from __future__ import annotations

from enum import Enum


class Mode(str, Enum):
    """The ways a priced call gets paid (the names of the public reference)."""

    #: The tool answers with link and paymentId; `confirm_<tool>_payment(payment_id)`
    #: runs it once paid.
    TWO_STEP = "two-step"
    #: The tool gains an optional `payment_id`; the first call answers with the link,
    #: the retry with the same arguments and the id runs it.
    RESUBMIT = "resubmit"
    #: The link streams in progress notifications while the call waits for the payer.
    PROGRESS = "progress"
    #: The server asks the client to show the link through MCP elicitation.
    ELICITATION = "elicitation"
    #: The confirm tool appears for the paying caller only while its payment is open.
    DYNAMIC_TOOLS = "dynamic-tools"
    #: Elicitation where the client declares it, else two steps.
    AUTO = "auto"

    @classmethod
    def parse(cls, value: "Mode | str") -> "Mode":
        """Accepts `Mode.TWO_STEP`, "two-step", "two_step" and "TWO_STEP" alike."""
        if isinstance(value, Mode):
            return value
        wanted = str(value).strip().lower().replace("_", "-")
        for mode in cls:
            if mode.value == wanted:
                return mode
        names = ", ".join(m.value for m in cls)
        raise ValueError(f"unknown mode `{value}`; expected one of {names}")

    def __str__(self) -> str:
        return self.value
