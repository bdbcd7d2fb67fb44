"""Two servers sharing pending payments through one Redis, as the processes of one server
behind a load balancer do: two example processes (examples/paid_server.py --store),
and two MCPServers of this process with a RedisStore each, whose tool runs the test
can count. Against a real service and a real Redis (WALLEOT_REDIS_URL)."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest
import redis
from mcp import Client

from walleot import RedisStore

from conftest import session_of
from test_example import HttpExample
from test_paid_tools import Counted, required, status, text
from test_redis_store import closed_port

pytestmark = pytest.mark.anyio

STORE_DOWN = "the server could not keep the payment; nothing was charged, try again"


def with_port(url: str, port: int) -> str:
    """`url` with its host and port replaced by 127.0.0.1:`port`."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


class RedisProxy:
    """A TCP relay to Redis that the test cuts and restores, as a network fault or a
    Redis restart would."""

    def __init__(self, redis_url: str) -> None:
        parts = urlsplit(redis_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.redis_url = redis_url
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return with_port(self.redis_url, self.port)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        await self.server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                sink.close()
                self.writers.discard(sink)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def pair(service, redis_url, prefix, **options) -> tuple[Counted, Counted]:
    """Two servers, each with a Walleot and a RedisStore of its own, sharing one Redis."""
    return tuple(Counted(service, store=RedisStore(redis_url, prefix=prefix), **options) for _ in range(2))


def runs(servers, tool="add") -> int:
    return sum(server.runs.get(tool, 0) for server in servers)


async def close(servers) -> None:
    for server in servers:
        await server.walleot.store.aclose()


async def test_a_payment_opened_on_one_server_is_confirmed_on_the_other(service, redis_url, redis_prefix):
    one, two = servers = pair(service, redis_url, redis_prefix)
    try:
        async with Client(one.mcp) as a, Client(two.mcp) as b:
            first = await required(a, "add", {"a": 2, "b": 5})
            args = {"payment_id": first.structured_content["paymentId"]}
            unpaid = await b.call_tool("confirm_add_payment", args)
            assert status(unpaid) == "pending", text(unpaid)
            service.pay(session_of(first))
            done = await b.call_tool("confirm_add_payment", args)
            assert text(done) == "7" and done.is_error is not True, text(done)
            assert service.session(session_of(first))["captureStatus"] == "captured"
            # The kept result, on either server.
            assert text(await a.call_tool("confirm_add_payment", args)) == "7"
            assert text(await b.call_tool("confirm_add_payment", args)) == "7"
        assert (one.runs, two.runs) == ({}, {"add": 1})
    finally:
        await close(servers)


async def test_ten_concurrent_confirms_on_two_servers_run_the_tool_once(service, redis_url, redis_prefix):
    servers = pair(service, redis_url, redis_prefix)
    try:
        async with Client(servers[0].mcp) as a, Client(servers[1].mcp) as b:
            first = await required(a, "add", {"a": 1, "b": 2})
            service.pay(session_of(first))
            args = {"payment_id": first.structured_content["paymentId"]}
            answers = [None] * 10

            async def confirm(i):
                answers[i] = await (a, b)[i % 2].call_tool("confirm_add_payment", args)

            async with anyio.create_task_group() as group:
                for i in range(10):
                    group.start_soon(confirm, i)
            assert [text(x) for x in answers] == ["3"] * 10
        assert runs(servers) == 1
    finally:
        await close(servers)


async def test_the_caps_hold_across_servers(service, redis_url, redis_prefix):
    # One authenticated caller, whichever server the balancer sends it to.
    identify = lambda ctx: "alice"  # noqa: E731
    servers = pair(service, redis_url, redis_prefix, identify=identify, max_open_per_caller=3)
    try:
        async with Client(servers[0].mcp) as a, Client(servers[1].mcp) as b:
            said = [status(await (a, b)[i % 2].call_tool("add", {"a": i, "b": 1})) for i in range(5)]
            assert said == ["payment_required"] * 3 + ["refused"] * 2
            refused = await b.call_tool("add", {"a": 9, "b": 9})
            assert "3 unpaid payments are open for this caller" in text(refused)
    finally:
        await close(servers)


async def test_a_redis_that_goes_away_is_a_clear_tool_error_and_loses_no_payment(service, redis_url, redis_prefix):
    proxy = RedisProxy(redis_url)
    await proxy.start()
    server = Counted(service, store=RedisStore(proxy.url, prefix=redis_prefix, timeout=2))
    try:
        async with Client(server.mcp) as client:
            first = await required(client, "add", {"a": 4, "b": 4})
            service.pay(session_of(first))
            args = {"payment_id": first.structured_content["paymentId"]}
            await proxy.stop()
            for _ in range(2):
                failed = await client.call_tool("confirm_add_payment", args)
                assert failed.is_error is True and status(failed) == "error", text(failed)
                assert text(failed) == STORE_DOWN
                assert str(proxy.port) not in text(failed)
            before = service.newest_session()
            opened = await client.call_tool("add", {"a": 1, "b": 1})
            assert status(opened) == "error" and text(opened) == STORE_DOWN
            assert service.newest_session() == before, "no session is opened that nobody could confirm"
            assert server.runs == {}
            await proxy.start()  # the same port: Redis is back
            done = await client.call_tool("confirm_add_payment", args)
            assert text(done) == "8" and done.is_error is not True, text(done)
            assert text(await client.call_tool("confirm_add_payment", args)) == "8"
        assert server.runs == {"add": 1}
    finally:
        await server.walleot.store.aclose()
        await proxy.stop()


def redis_state(redis_url: str, key: str) -> dict:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return client.hgetall(key)
    finally:
        client.close()


async def test_two_example_processes_share_payments_through_redis(service, redis_url, redis_prefix):
    extra = ("--store", redis_url, "--store-prefix", redis_prefix)
    with HttpExample(service, "two-step", extra) as one, HttpExample(service, "two-step", extra) as two:
        async with Client(one.url) as a, Client(two.url) as b:
            # Opened on one, confirmed on the other once paid, kept for both.
            first = await required(a, "add", {"a": 2, "b": 5})
            payment_id = first.structured_content["paymentId"]
            args = {"payment_id": payment_id}
            assert status(await b.call_tool("confirm_add_payment", args)) == "pending"
            service.pay(session_of(first))
            done = await b.call_tool("confirm_add_payment", args)
            assert text(done) == "7" and done.is_error is not True, text(done)
            assert text(await a.call_tool("confirm_add_payment", args)) == "7"
            assert text(await b.call_tool("confirm_add_payment", args)) == "7"
            assert service.session(session_of(first))["captureStatus"] == "captured"
            assert redis_state(redis_url, f"{redis_prefix}pay:{payment_id}")["state"] == "done"

            # Ten concurrent confirms spread over both processes: one claim, one answer.
            second = await required(b, "add", {"a": 1, "b": 2})
            service.pay(session_of(second))
            args = {"payment_id": second.structured_content["paymentId"]}
            answers = [None] * 10

            async def confirm(i):
                answers[i] = await (a, b)[i % 2].call_tool("confirm_add_payment", args)

            async with anyio.create_task_group() as group:
                for i in range(10):
                    group.start_soon(confirm, i)
            assert [text(x) for x in answers] == ["3"] * 10
            kept = redis_state(redis_url, f"{redis_prefix}pay:{args['payment_id']}")
            assert kept["state"] == "done" and kept["claimer"], kept
            assert service.session(session_of(second))["captureStatus"] == "captured"


async def test_an_example_whose_redis_is_down_answers_a_clear_tool_error(service):
    down = f"redis://127.0.0.1:{closed_port()}/0"
    with HttpExample(service, "two-step", ("--store", down)) as example:
        async with Client(example.url) as client:
            before = service.newest_session()
            failed = await client.call_tool("add", {"a": 1, "b": 1})
            assert failed.is_error is True and status(failed) == "error"
            assert text(failed) == STORE_DOWN
            assert not re.search(r"127\.0\.0\.1|redis", text(failed))
            assert service.newest_session() == before
            # A confirmation is told the same, not "unknown payment".
            confirm = await client.call_tool("confirm_add_payment", {"payment_id": "pay_x"})
            assert status(confirm) == "error" and text(confirm) == STORE_DOWN
            assert text(await client.call_tool("ping", {})) == "pong", "free tools need no store"
