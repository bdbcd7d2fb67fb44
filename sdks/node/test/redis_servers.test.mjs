// Two servers sharing pending payments through one Redis, as the processes of one server
// behind a load balancer do: two example processes (examples/paid_server.mjs --store),
// and two Walleots of this process with a RedisStore each, whose tool runs the test can
// count. Against a real service and a real Redis (WALLEOT_REDIS_URL).

import assert from "node:assert/strict";
import { connect, createServer } from "node:net";
import { test } from "node:test";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Redis } from "ioredis";

import { RedisStore } from "walleot";
import {
  Counted,
  closedPort,
  httpExample,
  needsService,
  needsServiceAndRedis,
  redisUrl,
  required,
  service,
  sessionOf,
  status,
  text,
  withPrefix,
} from "./support.mjs";

const STORE_DOWN = "the server could not keep the payment; nothing was charged, try again";

/** A TCP relay to Redis that the test cuts and restores, as a network fault or a Redis restart would. */
class RedisProxy {
  constructor(url) {
    const target = new URL(url);
    this.redisUrl = url;
    this.target = { host: target.hostname || "127.0.0.1", port: Number(target.port || 6379) };
    this.port = 0;
    this.sockets = new Set();
  }

  get url() {
    const url = new URL(this.redisUrl);
    url.hostname = "127.0.0.1";
    url.port = String(this.port);
    return url.toString();
  }

  async start() {
    this.server = createServer((client) => {
      const upstream = connect(this.target);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on("error", () => {});
        socket.on("close", () => this.sockets.delete(socket));
      }
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.port, "127.0.0.1", resolve);
    });
    this.port = this.server.address().port;
  }

  async stop() {
    const closed = new Promise((resolve) => this.server.close(resolve));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }
}

/** Runs `body` with `count` servers, each with a Walleot and a RedisStore of its own, sharing one Redis. */
async function withServers(count, options, body) {
  await withPrefix(async (prefix) => {
    const servers = Array.from({ length: count }, () => new Counted(service, { store: new RedisStore({ url: redisUrl, prefix }), ...options }));
    try {
      await body(servers);
    } finally {
      for (const server of servers) {
        await server.close();
        await server.walleot.store.close();
      }
    }
  });
}

const runs = (servers, tool = "add") => servers.reduce((sum, s) => sum + (s.runs[tool] ?? 0), 0);
const confirmAdd = (client, paymentId) => client.callTool({ name: "confirm_add_payment", arguments: { payment_id: paymentId } });

test("redis: a payment opened on one server is confirmed on the other", needsServiceAndRedis, async () => {
  await withServers(2, {}, async ([one, two]) => {
    const [a, b] = [await one.connect(), await two.connect()];
    const first = await required(assert, a, "add", { a: 2, b: 5 });
    const paymentId = first.structuredContent.paymentId;
    assert.equal(status(await confirmAdd(b, paymentId)), "pending");
    await service.pay(sessionOf(first));
    const done = await confirmAdd(b, paymentId);
    assert.equal(text(done), "7", text(done));
    assert.notEqual(done.isError, true);
    assert.equal((await service.session(sessionOf(first))).captureStatus, "captured");
    // The kept result, on either server.
    assert.equal(text(await confirmAdd(a, paymentId)), "7");
    assert.equal(text(await confirmAdd(b, paymentId)), "7");
    assert.deepEqual([one.runs, two.runs], [{}, { add: 1 }]);
  });
});

test("redis: ten concurrent confirms on two servers run the tool once", needsServiceAndRedis, async () => {
  await withServers(2, {}, async (servers) => {
    const clients = [await servers[0].connect(), await servers[1].connect()];
    const first = await required(assert, clients[0], "add", { a: 1, b: 2 });
    await service.pay(sessionOf(first));
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => confirmAdd(clients[i % 2], first.structuredContent.paymentId)),
    );
    assert.deepEqual(answers.map(text), Array(10).fill("3"));
    assert.equal(runs(servers), 1);
  });
});

test("redis: the caps hold across servers", needsServiceAndRedis, async () => {
  // One authenticated caller, whichever server the balancer sends it to.
  await withServers(2, { identify: () => "alice", maxOpenPerCaller: 3 }, async (servers) => {
    const clients = [await servers[0].connect(), await servers[1].connect()];
    const said = [];
    for (let i = 0; i < 5; i++) said.push(status(await clients[i % 2].callTool({ name: "add", arguments: { a: i, b: 1 } })));
    assert.deepEqual(said, [...Array(3).fill("payment_required"), ...Array(2).fill("refused")]);
    const refused = await clients[1].callTool({ name: "add", arguments: { a: 9, b: 9 } });
    assert.match(text(refused), /3 unpaid payments are open for this caller/);
  });
});

test("redis: a Redis that goes away is a clear tool error and loses no payment", needsServiceAndRedis, async () => {
  await withPrefix(async (prefix) => {
    const proxy = new RedisProxy(redisUrl);
    await proxy.start();
    const server = new Counted(service, { store: new RedisStore({ url: proxy.url, prefix, timeout: 2 }) });
    try {
      const client = await server.connect();
      const first = await required(assert, client, "add", { a: 4, b: 4 });
      const paymentId = first.structuredContent.paymentId;
      await service.pay(sessionOf(first));
      await proxy.stop();
      for (let i = 0; i < 2; i++) {
        const failed = await confirmAdd(client, paymentId);
        assert.equal(failed.isError, true);
        assert.equal(status(failed), "error", text(failed));
        assert.equal(text(failed), STORE_DOWN);
        assert.ok(!text(failed).includes(String(proxy.port)));
      }
      const before = await service.newestSession();
      const opened = await client.callTool({ name: "add", arguments: { a: 1, b: 1 } });
      assert.equal(status(opened), "error");
      assert.equal(text(opened), STORE_DOWN);
      assert.equal(await service.newestSession(), before, "no session is opened that nobody could confirm");
      assert.deepEqual(server.runs, {});
      await proxy.start(); // the same port: Redis is back
      const done = await confirmAdd(client, paymentId);
      assert.equal(text(done), "8", text(done));
      assert.notEqual(done.isError, true);
      assert.equal(text(await confirmAdd(client, paymentId)), "8");
      assert.deepEqual(server.runs, { add: 1 });
    } finally {
      await server.close();
      await server.walleot.store.close();
      await proxy.stop();
    }
  });
});

async function connected(url) {
  const client = new Client({ name: "agent", version: "0.0.1" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return client;
}

async function redisState(key) {
  const client = new Redis(redisUrl);
  try {
    return await client.hgetall(key);
  } finally {
    client.disconnect();
  }
}

test("redis: two example processes share payments through Redis", needsServiceAndRedis, async () => {
  await withPrefix(async (prefix) => {
    const extra = ["--store", redisUrl, "--store-prefix", prefix];
    const examples = [await httpExample("two-step", extra), await httpExample("two-step", extra)];
    const clients = [];
    try {
      for (const example of examples) clients.push(await connected(example.url));
      const [a, b] = clients;
      // Opened on one, confirmed on the other once paid, kept for both.
      const first = await required(assert, a, "add", { a: 2, b: 5 });
      const paymentId = first.structuredContent.paymentId;
      assert.equal(status(await confirmAdd(b, paymentId)), "pending");
      await service.pay(sessionOf(first));
      const done = await confirmAdd(b, paymentId);
      assert.equal(text(done), "7", text(done));
      assert.notEqual(done.isError, true);
      assert.equal(text(await confirmAdd(a, paymentId)), "7");
      assert.equal(text(await confirmAdd(b, paymentId)), "7");
      assert.equal((await service.session(sessionOf(first))).captureStatus, "captured");
      assert.equal((await redisState(`${prefix}pay:${paymentId}`)).state, "done");

      // Ten concurrent confirms spread over both processes: one claim, one answer.
      const second = await required(assert, b, "add", { a: 1, b: 2 });
      await service.pay(sessionOf(second));
      const id = second.structuredContent.paymentId;
      const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => confirmAdd(clients[i % 2], id)));
      assert.deepEqual(answers.map(text), Array(10).fill("3"));
      const kept = await redisState(`${prefix}pay:${id}`);
      assert.equal(kept.state, "done");
      assert.ok(kept.claimer);
      assert.equal((await service.session(sessionOf(second))).captureStatus, "captured");
    } finally {
      await Promise.all(clients.map((c) => c.close().catch(() => {})));
      await Promise.all(examples.map((e) => e.stop()));
    }
  });
});

test("redis: an example whose Redis is down answers a clear tool error", needsService, async () => {
  const example = await httpExample("two-step", ["--store", `redis://127.0.0.1:${await closedPort()}`]);
  let client;
  try {
    client = await connected(example.url);
    const before = await service.newestSession();
    const failed = await client.callTool({ name: "add", arguments: { a: 1, b: 1 } });
    assert.equal(failed.isError, true);
    assert.equal(status(failed), "error");
    assert.equal(text(failed), STORE_DOWN);
    assert.doesNotMatch(text(failed), /127\.0\.0\.1|redis/i);
    assert.equal(await service.newestSession(), before);
    // A confirmation is told the same, not "unknown payment".
    const confirm = await confirmAdd(client, "pay_x");
    assert.equal(status(confirm), "error");
    assert.equal(text(confirm), STORE_DOWN);
    assert.equal(text(await client.callTool({ name: "ping", arguments: {} })), "pong", "free tools need no store");
  } finally {
    await client?.close().catch(() => {});
    await example.stop();
  }
});
