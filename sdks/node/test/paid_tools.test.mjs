// The guarantees, tested against a real Walleot service with the official MCP client
// talking to McpServers of this process over streamable HTTP (and in memory): as
// clients and attackers would use them.

import assert from "node:assert/strict";
import { createServer } from "node:net";
import { test } from "node:test";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { z } from "zod";

import { Mode, Walleot, installWalleot } from "walleot";
import { needsService, required, service, sessionOf, status, text, withServer } from "./support.mjs";

test("tools/list shows prices and confirm tools, for tools registered before or after", needsService, async () => {
  for (const before of [false, true]) {
    await withServer(service, { before }, async (server) => {
      const client = await server.connect();
      const tools = Object.fromEntries((await client.listTools()).tools.map((t) => [t.name, t]));
      assert.deepEqual(tools.add._meta.price, { amount: 0.19, currency: "USD" });
      assert.deepEqual(tools.premium_analysis._meta.price, { amount: 0.5, currency: "USD" });
      assert.deepEqual(tools.with_extra._meta.price, { amount: 0.29, currency: "USD" });
      assert.equal(tools.free._meta?.price, undefined);
      // The official client checks even error results against an output schema.
      assert.equal(tools.with_extra.outputSchema, undefined, "a priced tool is listed without its output schema");
      assert.equal(tools.add.description, "Adds two numbers.");
      assert.deepEqual(tools.confirm_add_payment.inputSchema.required, ["payment_id"]);
      assert.equal(tools.add.inputSchema.properties.payment_id, undefined);
      assert.ok(tools.confirm_premium_analysis_payment && tools.confirm_with_extra_payment);
      assert.equal(tools.confirm_free_payment, undefined);
      assert.equal(text(await client.callTool({ name: "free", arguments: { x: 4 } })), "4");
    });
  }
});

test("two steps: pays, runs once and keeps the result", needsService, async () => {
  for (const transport of ["http", "memory"]) {
    await withServer(service, { transport }, async (server) => {
      const client = await server.connect();
      const first = await required(assert, client, "add", { a: 2, b: 5 });
      const s = first.structuredContent;
      assert.equal(s.amount, 0.19);
      assert.equal(s.amountMinor, 19);
      assert.equal(s.currency, "USD");
      assert.equal(s.tool, "add");
      assert.ok(s.expiresAt);
      assert.match(s.paymentId, /^pay_.{32}$/);
      assert.ok(!s.paymentUrl.includes(s.paymentId), "the payment id is not in the link");
      assert.match(s.nextStep, /confirm_add_payment/);
      const session = sessionOf(first);
      const held = await service.session(session);
      assert.equal(held.status, "pending");
      assert.equal(held.amount, 19);

      const unpaid = await client.callTool({ name: "confirm_add_payment", arguments: { payment_id: s.paymentId } });
      assert.equal(unpaid.isError, true);
      assert.equal(status(unpaid), "pending");
      assert.deepEqual(server.runs, {});

      await service.pay(session);
      const done = await client.callTool({ name: "confirm_add_payment", arguments: { payment_id: s.paymentId } });
      assert.notEqual(done.isError, true);
      assert.equal(text(done), "7");
      assert.equal((await service.session(session)).captureStatus, "captured");
      const again = await client.callTool({ name: "confirm_add_payment", arguments: { payment_id: s.paymentId } });
      assert.equal(text(again), "7", "a repeated confirm gets the kept result");
      assert.deepEqual(server.runs, { add: 1 }, transport);
    });
  }
});

test("every tool shape runs once paid", needsService, async () => {
  await withServer(service, {}, async (server) => {
    const client = await server.connect();
    for (const [tool, args, expected] of [
      ["premium_analysis", { data: "a b c" }, "3 words"],
      ["with_extra", { n: 21 }, '"double":42,"request":true'],
    ]) {
      const first = await required(assert, client, tool, args);
      await service.pay(sessionOf(first));
      const done = await client.callTool({
        name: `confirm_${tool}_payment`,
        arguments: { payment_id: first.structuredContent.paymentId },
      });
      assert.notEqual(done.isError, true, text(done));
      assert.ok(text(done).includes(expected), text(done));
    }
    const extra = await required(assert, client, "with_extra", { n: 4 });
    await service.pay(sessionOf(extra));
    const structured = await client.callTool({ name: "confirm_with_extra_payment", arguments: { payment_id: extra.structuredContent.paymentId } });
    assert.deepEqual(structured.structuredContent, { double: 8 });
    assert.deepEqual(server.runs, { premium_analysis: 1, with_extra: 2 });
  });
});

test("a payment pays only for its own tool and arguments", needsService, async () => {
  await withServer(service, {}, async (server) => {
    const client = await server.connect();
    const cheap = await required(assert, client, "add", { a: 1, b: 1 });
    await service.pay(sessionOf(cheap));
    const paymentId = cheap.structuredContent.paymentId;
    // A cheap payment for an expensive tool.
    const stolen = await client.callTool({ name: "confirm_premium_analysis_payment", arguments: { payment_id: paymentId } });
    assert.equal(stolen.isError, true);
    assert.equal(status(stolen), "refused");
    // The session id from the checkout link, which whoever saw the link knows.
    const session = sessionOf(cheap);
    for (const guess of [session, `pay_${session.slice(5)}`, "", 42, null]) {
      const taken = await client.callTool({ name: "confirm_add_payment", arguments: { payment_id: guess } });
      assert.equal(taken.isError, true, String(guess));
      assert.equal(status(taken), "refused", String(guess));
    }
    assert.deepEqual(server.runs, {});
    // The payment still pays for what it was made for.
    const done = await client.callTool({ name: "confirm_add_payment", arguments: { payment_id: paymentId } });
    assert.equal(text(done), "2");
  });
});

test("another caller is refused a payment bound to its subject", needsService, async () => {
  const identify = (extra) => extra._meta?.["test/user"];
  await withServer(service, { identify }, async (server) => {
    const client = await server.connect();
    const first = await client.callTool({ name: "add", arguments: { a: 1, b: 1 }, _meta: { "test/user": "alice" } });
    assert.equal(status(first), "payment_required");
    await service.pay(sessionOf(first));
    const args = { payment_id: first.structuredContent.paymentId };
    const mallory = await client.callTool({ name: "confirm_add_payment", arguments: args, _meta: { "test/user": "mallory" } });
    assert.equal(status(mallory), "refused");
    const anonymous = await client.callTool({ name: "confirm_add_payment", arguments: args });
    assert.equal(status(anonymous), "refused");
    assert.deepEqual(server.runs, {});
    const alice = await client.callTool({ name: "confirm_add_payment", arguments: args, _meta: { "test/user": "alice" } });
    assert.equal(text(alice), "2");
  });
});

test("resubmit binds the payment to the arguments", needsService, async () => {
  await withServer(service, { mode: Mode.RESUBMIT }, async (server) => {
    const client = await server.connect();
    const tools = Object.fromEntries((await client.listTools()).tools.map((t) => [t.name, t]));
    assert.ok(tools.add.inputSchema.properties.payment_id);
    assert.ok(!Object.keys(tools).some((name) => name.startsWith("confirm_")));
    const first = await required(assert, client, "add", { a: 2, b: 5, payment_id: null }); // null is absent
    const s = first.structuredContent;
    assert.match(s.nextStep, /again with the same arguments/);
    const paymentId = s.paymentId;
    const session = sessionOf(first);
    const unpaid = await client.callTool({ name: "add", arguments: { a: 2, b: 5, payment_id: paymentId } });
    assert.equal(status(unpaid), "pending");
    assert.equal(unpaid.isError, true);
    await service.pay(session);
    const other = await client.callTool({ name: "add", arguments: { a: 100, b: 100, payment_id: paymentId } });
    assert.equal(status(other), "refused");
    assert.match(text(other), /other arguments/);
    const expensive = await client.callTool({ name: "premium_analysis", arguments: { data: "x", payment_id: paymentId } });
    assert.equal(status(expensive), "refused");
    const link = await client.callTool({ name: "add", arguments: { a: 2, b: 5, payment_id: session } });
    assert.equal(status(link), "refused");
    assert.deepEqual(server.runs, {});
    const done = await client.callTool({ name: "add", arguments: { b: 5, a: 2, payment_id: paymentId } });
    assert.equal(text(done), "7");
    assert.notEqual(done.isError, true);
    const reused = await client.callTool({ name: "add", arguments: { a: 2, b: 5, payment_id: paymentId } });
    assert.equal(text(reused), "7");
    assert.deepEqual(server.runs, { add: 1 }, "reuse hands out the kept result, never a second run");
    assert.equal((await service.session(session)).captureStatus, "captured");
  });
});

for (const mode of [Mode.TWO_STEP, Mode.RESUBMIT]) {
  test(`${mode}: ten concurrent confirms run the tool once`, needsService, async () => {
    await withServer(service, { mode }, async (server) => {
      const client = await server.connect();
      const first = await required(assert, client, "add", { a: 1, b: 2 });
      await service.pay(sessionOf(first));
      const paymentId = first.structuredContent.paymentId;
      const call =
        mode === Mode.RESUBMIT
          ? { name: "add", arguments: { a: 1, b: 2, payment_id: paymentId } }
          : { name: "confirm_add_payment", arguments: { payment_id: paymentId } };
      // Ten clients of their own as well as ten calls on one.
      const others = await Promise.all(Array.from({ length: 4 }, () => server.connect()));
      const answers = await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i < 6 ? client : others[i - 6]).callTool(call)),
      );
      assert.deepEqual(answers.map(text), Array(10).fill("3"));
      assert.deepEqual(server.runs, { add: 1 });
    });
  });
}

test("a failing tool releases the funds", needsService, async () => {
  await withServer(service, {}, async (server) => {
    const client = await server.connect();
    const first = await required(assert, client, "broken", { n: 1 });
    const session = sessionOf(first);
    await service.pay(session);
    assert.equal((await service.session(session)).captureStatus, "held");
    const args = { payment_id: first.structuredContent.paymentId };
    const failed = await client.callTool({ name: "confirm_broken_payment", arguments: args });
    assert.equal(failed.isError, true);
    assert.match(text(failed), /the tool failed/);
    const released = await service.session(session);
    assert.equal(released.captureStatus, "released");
    assert.equal(released.status, "cancelled");
    const again = await client.callTool({ name: "confirm_broken_payment", arguments: args });
    assert.equal(again.isError, true);
    assert.deepEqual(server.runs, { broken: 1 });
  });
});

test("arguments are checked before any money is asked for", needsService, async () => {
  await withServer(service, {}, async (server) => {
    const client = await server.connect();
    const before = await service.newestSession();
    for (const bad of [{ a: "not a number", b: 1 }, { a: 1 }, { a: [1], b: {} }, {}]) {
      const refused = await client.callTool({ name: "add", arguments: bad });
      assert.equal(refused.isError, true, JSON.stringify(bad));
      assert.match(text(refused), /nothing was charged/);
      assert.match(text(refused), /Error executing tool add/);
    }
    const fraction = await client.callTool({ name: "with_extra", arguments: { n: 1.5 } });
    assert.match(text(fraction), /nothing was charged/);
    assert.equal(await service.newestSession(), before, "no session was created");
    assert.deepEqual(server.runs, {});
    await required(assert, client, "add", { a: 1, b: 2 });
  });
});

test("an unknown payment id says what became of the money", needsService, async () => {
  await withServer(service, {}, async (server) => {
    const client = await server.connect();
    const unknown = await client.callTool({ name: "confirm_add_payment", arguments: { payment_id: "pay_forgotten_by_a_restart" } });
    assert.equal(unknown.isError, true);
    assert.equal(status(unknown), "refused");
    assert.match(text(unknown), /Nothing is charged/);
    assert.match(text(unknown), /hold deadline/);
  });
});

test("one caller cannot open payments without end", needsService, async () => {
  await withServer(service, { maxOpenPerCaller: 3 }, async (server) => {
    const greedy = await server.connect();
    const statuses = [];
    for (let a = 0; a < 5; a++) statuses.push(status(await greedy.callTool({ name: "add", arguments: { a, b: 1 } })));
    assert.deepEqual(statuses, [...Array(3).fill("payment_required"), ...Array(2).fill("refused")]);
    const before = await service.newestSession();
    const refused = await greedy.callTool({ name: "add", arguments: { a: 9, b: 1 } });
    assert.match(text(refused), /unpaid payments are open/);
    assert.equal(refused.isError, true);
    assert.equal(await service.newestSession(), before, "refusals never reach the service");
    const other = await server.connect();
    await required(assert, other, "add", { a: 1, b: 1 });
  });
  await withServer(service, { maxOpen: 2 }, async (server) => {
    const statuses = [];
    for (let a = 0; a < 3; a++) {
      const client = await server.connect();
      statuses.push(status(await client.callTool({ name: "add", arguments: { a, b: 1 } })));
    }
    assert.deepEqual(statuses, ["payment_required", "payment_required", "refused"]);
  });
});

test("sessions are manual capture with a 30 minute link", needsService, async () => {
  await withServer(service, {}, async (server) => {
    const client = await server.connect();
    const first = await required(assert, client, "add", { a: 1, b: 1 });
    const session = await service.session(sessionOf(first));
    const seconds = (Date.parse(session.expiresAt) - Date.parse(session.createdAt)) / 1000;
    assert.ok(Math.abs(seconds - 1800) < 5, String(seconds));
    assert.equal(session.captureMethod, "manual");
    assert.equal(session.description, "Tool call: add");
    await service.pay(sessionOf(first));
    assert.equal((await service.session(sessionOf(first))).captureStatus, "held");
  });
});

test("a service that is down is a clear tool error", needsService, async () => {
  const walleot = new Walleot({ apiKey: service.key, baseUrl: "http://127.0.0.1:9", timeout: 3, log: () => {} });
  const client = await connectOne(walleot);
  const failed = await client.callTool({ name: "add", arguments: { a: 1, b: 1 } });
  assert.equal(failed.isError, true);
  assert.equal(status(failed), "error");
  assert.match(text(failed), /could not be reached/);
  assert.ok(!text(failed).includes("127.0.0.1:9"));
  await client.close();
});

test("a service that never answers times out instead of hanging", needsService, async () => {
  const silent = createServer(() => {}); // accepts connections, never answers
  await new Promise((resolve) => silent.listen(0, "127.0.0.1", resolve));
  try {
    const url = `http://127.0.0.1:${silent.address().port}`;
    const walleot = new Walleot({ apiKey: service.key, baseUrl: url, timeout: 1, log: () => {} });
    const client = await connectOne(walleot);
    const started = Date.now();
    const failed = await client.callTool({ name: "add", arguments: { a: 1, b: 1 } });
    assert.ok(Date.now() - started < 10_000);
    assert.equal(failed.isError, true);
    assert.match(text(failed), /could not be reached/);
    await client.close();
  } finally {
    silent.closeAllConnections?.();
    for (const socket of silent.connections ?? []) socket.destroy();
    silent.close();
  }
});

test("progress streams the link and sees the payment at once", needsService, async () => {
  await withServer(service, { mode: Mode.PROGRESS, pollEvery: 10 }, async (server) => {
    const client = await server.connect();
    let paidAt;
    const done = await client.callTool({ name: "add", arguments: { a: 1, b: 1 } }, undefined, {
      onprogress: async ({ message }) => {
        if (message?.includes("/checkout/") && paidAt === undefined) {
          paidAt = Date.now();
          await service.pay(sessionOf(message));
        }
      },
    });
    const answered = Date.now();
    assert.equal(text(done), "2", text(done));
    assert.notEqual(done.isError, true);
    assert.ok(paidAt !== undefined && answered - paidAt < 1500, "the long poll sees the payment at once");
    // Without a progress token the call falls back to two steps.
    const plain = await client.callTool({ name: "add", arguments: { a: 2, b: 2 } });
    assert.equal(status(plain), "payment_required");
    assert.match(plain.structuredContent.nextStep, /confirm_add_payment/);
    assert.deepEqual(server.runs, { add: 1 });
  });
});

test("every mode of the reference is accepted, and nothing else", () => {
  for (const name of Object.keys(Mode)) {
    const server = new McpServer({ name: "modes", version: "0" });
    const walleot = installWalleot(server, { apiKey: "sk_test_x", mode: name }); // "TWO_STEP", "DYNAMIC_TOOLS", ...
    assert.equal(walleot.mode, Mode[name]);
  }
  assert.throws(() => installWalleot(new McpServer({ name: "x", version: "0" }), { apiKey: "sk_test_x", mode: "teleport" }), /unknown mode/);
});

test("installing needs a key and an McpServer, once, before connecting", async () => {
  const saved = { key: process.env.WALLEOT_API_KEY, url: process.env.WALLEOT_API_URL };
  try {
    delete process.env.WALLEOT_API_KEY;
    assert.throws(() => installWalleot(new McpServer({ name: "x", version: "0" })), /WALLEOT_API_KEY/);
    assert.throws(() => installWalleot(new Server({ name: "x", version: "0" }), { apiKey: "sk_test_x" }), /McpServer/);
    process.env.WALLEOT_API_KEY = "sk_test_env";
    delete process.env.WALLEOT_API_URL;
    assert.equal(installWalleot(new McpServer({ name: "y", version: "0" })).client.base, "http://127.0.0.1:8080/v1/");
    process.env.WALLEOT_API_URL = "https://pay.example/v1";
    assert.equal(installWalleot(new McpServer({ name: "z", version: "0" })).client.base, "https://pay.example/v1/");
    const twice = new McpServer({ name: "twice", version: "0" });
    const walleot = installWalleot(twice);
    assert.throws(() => walleot.install(twice), /already installed/);
    const connected = new McpServer({ name: "late", version: "0" });
    await connected.connect(InMemoryTransport.createLinkedPair()[1]);
    assert.throws(() => installWalleot(connected), /before server\.connect/);
    await connected.close();
  } finally {
    for (const [name, value] of [["WALLEOT_API_KEY", saved.key], ["WALLEOT_API_URL", saved.url]]) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
});

/** A one-tool server priced by `walleot`, and a client connected to it in memory. */
async function connectOne(walleot) {
  const server = new McpServer({ name: "one", version: "0" });
  walleot.install(server);
  server.registerTool(
    "add",
    { inputSchema: { a: z.number(), b: z.number() }, price: { amount: 0.19, currency: "USD" } },
    async ({ a, b }) => ({ content: [{ type: "text", text: String(a + b) }] }),
  );
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new Client({ name: "walleot-test", version: "0" });
  await client.connect(clientSide);
  return client;
}
