"""Per-call prices on the tools of MCP servers built with the official `mcp` package,
paid through Walleot.

    from walleot import Walleot, Mode, price

    Walleot(mcp, apiKey=os.environ["WALLEOT_API_KEY"], mode=Mode.TWO_STEP)

    @mcp.tool()
    @price(0.50, "USD")
    async def premium_analysis(data: str) -> str: ...

Pending payments live in this process by default; `store=RedisStore(url)` shares them
between the processes of one server behind a load balancer.
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
from ._redis import RedisStore, StoreUnavailable
from ._store import MemoryStore, PaymentStore, StoreError, StoreFull, TooManyOpen, arguments_hash

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_MAX_OPEN",
    "DEFAULT_MAX_OPEN_PER_CALLER",
    "DEFAULT_PAYMENT_TTL",
    "SUPPORTED_MODES",
    "MemoryStore",
    "Mode",
    "PaymentStore",
    "Price",
    "PriceError",
    "RedisStore",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "TooManyOpen",
    "Walleot",
    "arguments_hash",
    "confirm_tool_name",
    "price",
]
