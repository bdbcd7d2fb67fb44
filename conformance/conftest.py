"""The matrix and its configuration, all from the environment.

    WALLEOT_API_URL, WALLEOT_API_KEY        a service (high POST limit) and its test key
    WALLEOT_LIMITED_API_URL, _API_KEY,      a service allowing few POSTs a minute, and an
    WALLEOT_LIMITED_CLOCK_URL               address whose POST moves its clock on 61 s
    CONFORMANCE_RUST_SERVER                 the built Rust example binary
    CONFORMANCE_PYTHON                      a python with `walleot` and `mcp` installed
    CONFORMANCE_PYTHON_EXAMPLE              (optional) the Python example to run; default
                                            sdks/python/examples/paid_server.py
    CONFORMANCE_NODE_DIR                    a built copy of sdks/node
    CONFORMANCE_REQUIRE_ALL=1               a missing variable fails the run

Tests that take a `target` run once per SDK x mode x transport; the `server` fixture
starts each example once per target and pytest groups the tests by target, so at most
one example server of the matrix runs at a time. Over stdio, where every connection is
a server process of its own, the tests of a target share its connections (`connect`). Which cells are expected to fail is
decided here, once, from what each example's --help offers and what its host MCP SDK
can speak: a flag that appears later turns its cells on without an edit.
"""

from __future__ import annotations

import os
import sys
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__

from support import MODES, SDKS, TRANSPORTS, Example, ExampleServer, Payer, Service, Target  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

#: What each SDK's host MCP SDK cannot do, for the cells that need it.
HOST_LIMITS = {
    "node": "@modelcontextprotocol/sdk 1.x (the Node SDK's host) speaks MCP up to 2025-11-25, "
    "so the client falls back to it: no 2026-07-28 session, no input-required round trip",
}


def _example_command(sdk: str) -> tuple[list[str] | None, str]:
    """The command that runs an SDK's example, or None and the variable that is missing."""
    if sdk == "rust":
        binary = os.environ.get("CONFORMANCE_RUST_SERVER")
        return ([binary] if binary else None), "CONFORMANCE_RUST_SERVER"
    if sdk == "python":
        python = os.environ.get("CONFORMANCE_PYTHON")
        example = os.environ.get("CONFORMANCE_PYTHON_EXAMPLE") or str(REPO / "sdks/python/examples/paid_server.py")
        return ([python, example] if python else None), "CONFORMANCE_PYTHON"
    directory = os.environ.get("CONFORMANCE_NODE_DIR")
    return (["node", str(Path(directory) / "examples/paid_server.mjs")] if directory else None), "CONFORMANCE_NODE_DIR"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "modes(*names): run only in these modes")
    config.addinivalue_line("markers", "transports(*names): run only over these transports")
    config.addinivalue_line("markers", "needs_2026: needs an MCP 2026-07-28 session")
    config.addinivalue_line("markers", "needs_failing_tool: needs the example's --failing-tool")
    examples: dict[str, Example] = {}
    missing: dict[str, str] = {}
    for sdk in SDKS:
        command, variable = _example_command(sdk)
        if command is None:
            missing[sdk] = f"{variable} is not set: the {sdk} SDK is not tested"
            continue
        try:
            examples[sdk] = Example.probe(sdk, command)
        except (OSError, RuntimeError, ValueError) as broken:
            raise pytest.UsageError(f"{variable} names no runnable {sdk} example: {broken}") from None
    services = [v for v in ("WALLEOT_API_URL", "WALLEOT_API_KEY") if not os.environ.get(v)]
    limited = [
        v
        for v in ("WALLEOT_LIMITED_API_URL", "WALLEOT_LIMITED_API_KEY", "WALLEOT_LIMITED_CLOCK_URL")
        if not os.environ.get(v)
    ]
    if os.environ.get("CONFORMANCE_REQUIRE_ALL") == "1":
        unset = [reason.split()[0] for reason in missing.values()] + services + limited
        if unset:
            raise pytest.UsageError(
                "CONFORMANCE_REQUIRE_ALL=1 but these are not set: " + ", ".join(unset) + " (see conformance/README.md)"
            )
    config.stash[EXAMPLES] = examples
    config.stash[MISSING] = missing


EXAMPLES = pytest.StashKey[dict]()
MISSING = pytest.StashKey[dict]()


def _expected_failures(function, example: Example | None, target: Target) -> list:
    """The xfail marks of one cell, each with its reason."""
    marks = []
    if example is None:
        return marks
    if target.transport == "stateless" and not example.offers("--stateless"):
        marks.append(
            pytest.mark.xfail(
                run=False,
                strict=True,
                reason=f"the {target.sdk} example offers no --stateless flag: stateless HTTP is not served by it",
            )
        )
    if function.get_closest_marker("needs_2026") and target.sdk in HOST_LIMITS:
        marks.append(pytest.mark.xfail(strict=True, reason=HOST_LIMITS[target.sdk]))
    if function.get_closest_marker("needs_failing_tool") and not example.offers("--failing-tool"):
        marks.append(
            pytest.mark.xfail(
                strict=False,
                reason=f"the {target.sdk} example has no --failing-tool flag yet (fragile_report at 0.05 USD)",
            )
        )
    return marks


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" not in metafunc.fixturenames:
        return
    only_modes = metafunc.definition.get_closest_marker("modes")
    only_transports = metafunc.definition.get_closest_marker("transports")
    examples = metafunc.config.stash[EXAMPLES]
    missing = metafunc.config.stash[MISSING]
    cells = []
    for sdk in SDKS:
        for mode in only_modes.args if only_modes else MODES:
            for transport in only_transports.args if only_transports else TRANSPORTS:
                target = Target(sdk, mode, transport)
                if sdk in missing:
                    marks = [pytest.mark.skip(reason=missing[sdk])]
                else:
                    marks = _expected_failures(metafunc.definition, examples.get(sdk), target)
                cells.append(pytest.param(target, id=target.id, marks=marks))
    metafunc.parametrize("target", cells, scope="session")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def service() -> Service:
    url, key = os.environ.get("WALLEOT_API_URL"), os.environ.get("WALLEOT_API_KEY")
    if not (url and key):
        pytest.skip("WALLEOT_API_URL and WALLEOT_API_KEY name no service")
    return Service(url.rstrip("/"), key)


@pytest.fixture(scope="session")
def limited() -> Service:
    url = os.environ.get("WALLEOT_LIMITED_API_URL")
    key = os.environ.get("WALLEOT_LIMITED_API_KEY")
    clock = os.environ.get("WALLEOT_LIMITED_CLOCK_URL")
    if not (url and key and clock):
        pytest.skip("no rate-limited service named by WALLEOT_LIMITED_API_URL, _API_KEY and _CLOCK_URL")
    return Service(url.rstrip("/"), key, clock)


@pytest.fixture(scope="session")
def examples(pytestconfig: pytest.Config) -> dict[str, Example]:
    return pytestconfig.stash[EXAMPLES]


def flags_for(example: Example) -> tuple[str, ...]:
    """Flags every matrix server gets: the failing tool wherever the example has it."""
    return ("--failing-tool",) if example.offers("--failing-tool") else ()


@pytest.fixture(scope="session")
def server(target: Target, service: Service, examples: dict[str, Example]):
    """The target's example against the main service, started once per target."""
    example = examples[target.sdk]
    with ExampleServer(example, target, service, flags_for(example)) as running:
        yield running


class Relay:
    """Hands the elicitations of a shared connection to the payer of the current test."""

    payer: Payer | None = None

    async def on_elicitation(self, context, params):
        assert self.payer is not None, "an elicitation arrived for a test that pays nothing"
        return await self.payer.on_elicitation(context, params)


@pytest.fixture(scope="session")
async def stdio_connections(server: ExampleServer):
    """stdio: one plain and one paying connection per target, opened once. Each test
    leaves no unpaid payment open but the one it asks about, so they share well."""
    if server.target.transport != "stdio":
        yield None
        return
    relay = Relay()
    async with AsyncExitStack() as stack:
        plain = await stack.enter_async_context(server.client())
        if server.mode in ("elicitation", "auto"):
            paying = await stack.enter_async_context(server.client(relay))
        else:
            paying = plain  # no elicitation: the payer only answers progress, per call
        yield plain, paying, relay


@pytest.fixture
def connect(server: ExampleServer, stdio_connections):
    """A connection to the target's server: new over HTTP, shared over stdio. With a
    payer it declares elicitation and pays what it is asked to (ELICITATION, AUTO)."""

    @asynccontextmanager
    async def connecting(payer: Payer | None = None):
        if stdio_connections is None:
            async with server.client(payer) as client:
                yield client
            return
        plain, paying, relay = stdio_connections
        relay.payer = payer
        try:
            yield paying if payer is not None else plain
        finally:
            relay.payer = None

    return connecting


@pytest.fixture
def start(target: Target, examples: dict[str, Example]):
    """Starts the target's example against another service (one a test breaks on
    purpose), stopped when the test ends."""
    started: list[ExampleServer] = []

    def starting(against: Service) -> ExampleServer:
        example = examples[target.sdk]
        running = ExampleServer(example, target, against, flags_for(example)).__enter__()
        started.append(running)
        return running

    yield starting
    for running in started:
        running.__exit__()
