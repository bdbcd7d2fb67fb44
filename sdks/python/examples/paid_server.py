"""A small MCP server with a free tool and two priced ones, paid through Walleot.

    WALLEOT_API_KEY=sk_test_... python examples/paid_server.py --mode two-step
    WALLEOT_API_KEY=sk_test_... python examples/paid_server.py --mode resubmit --http 127.0.0.1:3001
    WALLEOT_API_KEY=sk_test_... python examples/paid_server.py --http 127.0.0.1:3001 --store redis://127.0.0.1:6379/0

Over stdio by default; with `--http ADDR` a streamable HTTP endpoint at /mcp, with
`--stateless` one that keeps no MCP sessions.
WALLEOT_API_URL names the service (default http://127.0.0.1:8080). With `--store`,
pending payments are kept in Redis, shared by every process given the same store and
`--store-prefix` (several of them behind a load balancer).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys

from mcp.server.mcpserver import MCPServer

from walleot import SUPPORTED_MODES, Mode, RedisStore, Walleot, price

mcp = MCPServer("walleot-paid-example", version="0.1.0", log_level="WARNING")


@mcp.tool(description="Answers pong. Free.")
def ping() -> str:
    return "pong"


@mcp.tool(description="Adds two numbers.")
@price(0.19, "USD")
async def add(a: float, b: float) -> str:
    total = a + b
    return str(int(total)) if total.is_integer() else repr(total)


@mcp.tool(description="Advanced data analysis.")
@price(0.50, "USD")
async def premium_analysis(data: str) -> str:
    return f"{len(data.split())} words, {len(data)} characters"


async def fragile_report(data: str) -> str:
    """A report whose source is always down: it fails after payment."""
    raise RuntimeError(f"the report source is down; nothing was made of {len(data)} characters")


async def serve_http(addr: str, stateless: bool) -> None:
    import uvicorn

    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, int(port)))
    app = mcp.streamable_http_app(host=host, stateless_http=stateless)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if serving.done():
            await serving
            return
        await asyncio.sleep(0.02)
    bound_host, bound_port = listener.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"MCP over streamable HTTP at http://{shown}:{bound_port}/mcp", file=sys.stderr, flush=True)
    await serving


def main() -> None:
    modes = ", ".join(m.value for m in Mode)
    parser = argparse.ArgumentParser(description="An MCP server with priced tools, paid through Walleot")
    parser.add_argument(
        "--mode",
        default="two-step",
        help=f"how payments happen: {modes} (this SDK runs "
        + ", ".join(m.value for m in SUPPORTED_MODES)
        + ")",
    )
    parser.add_argument("--http", metavar="ADDR", help="serve streamable HTTP at ADDR/mcp instead of stdio")
    parser.add_argument(
        "--stateless",
        action="store_true",
        help="with --http, serve without MCP sessions (MCP 2026-07-28 requests never have one)",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        help="keep pending payments in Redis at URL (redis://HOST:PORT/DB), shared with every process "
        "given the same URL and prefix; default: in this process",
    )
    parser.add_argument("--store-prefix", metavar="PREFIX", default="walleot:", help="the Redis key prefix (walleot:)")
    parser.add_argument(
        "--failing-tool",
        action="store_true",
        help="also serve fragile_report(data) at 0.05 USD, which always fails: its payment is released",
    )
    args = parser.parse_args()
    if args.stateless and not args.http:
        parser.exit(2, "--stateless needs --http\n")
    if args.failing_tool:
        mcp.tool(description="A report whose source is always down.")(price(0.05, "USD")(fragile_report))
    store = None
    if args.store is not None:
        if not args.store.startswith(("redis://", "rediss://", "unix://")):
            parser.exit(2, f"--store takes a redis://, rediss:// or unix:// URL, not {args.store!r}\n")
        store = RedisStore(args.store, prefix=args.store_prefix)
    try:
        Walleot(mcp, mode=args.mode, store=store)  # WALLEOT_API_KEY, WALLEOT_API_URL
    except (ValueError, NotImplementedError) as refused:
        parser.exit(2, f"{refused}\n")
    if args.http:
        asyncio.run(serve_http(args.http, args.stateless))
    else:
        asyncio.run(mcp.run_stdio_async())


if __name__ == "__main__":
    main()
