"""The paid example server built on the official PyPI `walleot` package (on `paymcp`),
pointed at this service, for the benchmark's comparison: `ping` free, `add` at 0.19 USD
in TWO_STEP mode, over streamable HTTP.

    WALLEOT_API_URL=http://127.0.0.1:8080 WALLEOT_API_KEY=sk_test_... \
        python official_walleot.py --port 3005
"""

import argparse
import os
import sys

import paymcp.providers.walleot as provider
from mcp.server.fastmcp import FastMCP
from paymcp import Mode, price
from walleot import Walleot

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
port = parser.parse_args().port

# The package's only knob for its address: the provider module's base URL.
provider.BASE_URL = os.environ["WALLEOT_API_URL"].rstrip("/") + "/v1"

mcp = FastMCP("official-walleot", host="127.0.0.1", port=port, log_level="WARNING")
Walleot(mcp, apiKey=os.environ["WALLEOT_API_KEY"], mode=Mode.TWO_STEP)


@mcp.tool()
def ping() -> str:
    """Answers pong. Free."""
    return "pong"


@mcp.tool()
@price(0.19, "USD")
async def add(a: float, b: float):
    """Adds two numbers. Async: paymcp awaits the paid tool."""
    return str(a + b)


print(f"MCP over streamable HTTP at http://127.0.0.1:{port}/mcp", file=sys.stderr, flush=True)
mcp.run(transport="streamable-http")
