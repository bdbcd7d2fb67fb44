"""Per-call prices on the tools of MCP servers built with the official `mcp` package,
paid through Walleot.

    from walleot import Walleot, Mode, price

    Walleot(mcp, apiKey=os.environ["WALLEOT_API_KEY"], mode=Mode.TWO_STEP)

    @mcp.tool()
    @price(0.50, "USD")
    async def premium_analysis(data: str) -> str: ...
"""

from ._core import (
    DEFAULT_API_URL,
    DEFAULT_MAX_OPEN,
    DEFAULT_MAX_OPEN_PER_CALLER,
    DEFAULT_PAYMENT_TTL,
    SUPPORTED_MODES,
    Walleot,
    confirm_tool_name,
)
from ._mode import Mode
from ._price import Price, PriceError, price
from ._store import MemoryStore, arguments_hash

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_MAX_OPEN",
    "DEFAULT_MAX_OPEN_PER_CALLER",
    "DEFAULT_PAYMENT_TTL",
    "SUPPORTED_MODES",
    "MemoryStore",
    "Mode",
    "Price",
    "PriceError",
    "Walleot",
    "arguments_hash",
    "confirm_tool_name",
    "price",
]
