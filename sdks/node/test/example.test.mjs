// The example server (examples/paid_server.mjs) as a child process, driven by the
// official MCP client as an agent would, over streamable HTTP and stdio, paying through
// the service's test helper as a payer would.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

import { httpExample, needsService, service, sessionOf, text } from "./support.mjs";

const EXAMPLE = fileURLToPath(new URL("../examples/paid_server.mjs", import.meta.url));
const MODES = ["two-step", "resubmit", "progress", "elicitation", "auto", "dynamic-tools"];

function exampleEnv() {
  return { ...process.env, WALLEOT_API_URL: service.url, WALLEOT_API_KEY: service.key };
}

function newClient(mode) {
  const elicitation = mode === "elicitation" || mode === "auto";
  const client = new Client({ name: "agent", version: "0.0.1" }, { capabilities: elicitation ? { elicitation: { url: {} } } : {} });
  if (elicitation) {
    client.setRequestHandler(ElicitRequestSchema, async ({ params }) => {
      await service.pay(sessionOf(params.url ?? params.message));
      return { action: "accept", content: { paid: true } };
    });
  }
  return client;
}

/** What an agent does: list, call, pay, confirm; and a call with bad arguments. */
async function agentRun(client, mode) {
  const report = {};
  const tools = Object.fromEntries((await client.listTools()).tools.map((t) => [t.name, t]));
  report.tools = Object.keys(tools).sort();
  report.price = tools.add._meta?.price;
  const args = { a: 2, b: 5 };
  if (mode === "elicitation" || mode === "auto") {
    report.done = await client.callTool({ name: "add", arguments: args });
  } else if (mode === "progress") {
    let paid = false;
    report.done = await client.callTool({ name: "add", arguments: args }, undefined, {
      onprogress: async ({ message }) => {
        if (!paid && message?.includes("/checkout/")) {
          paid = true;
          await service.pay(sessionOf(message));
        }
      },
    });
    report.paidFromProgress = paid;
  } else {
    const first = await client.callTool({ name: "add", arguments: args });
    report.first = first;
    const paymentId = first.structuredContent.paymentId;
    const session = sessionOf(first);
    await service.pay(session);
    if (mode === "dynamic-tools") report.listedAfterPayment = (await client.listTools()).tools.map((t) => t.name);
    if (mode === "resubmit") {
      report.stolen = await client.callTool({ name: "add", arguments: { ...args, payment_id: session } });
      report.done = await client.callTool({ name: "add", arguments: { ...args, payment_id: paymentId } });
    } else {
      report.stolen = await client.callTool({ name: "confirm_add_payment", arguments: { payment_id: session } });
      report.done = await client.callTool({ name: "confirm_add_payment", arguments: { payment_id: paymentId } });
    }
  }
  report.bad = await client.callTool({ name: "add", arguments: { a: "not a number", b: 1 } });
  report.free = await client.callTool({ name: "ping", arguments: {} });
  return report;
}

function check(report, mode) {
  assert.deepEqual(report.price, { amount: 0.19, currency: "USD" }, mode);
  for (const name of ["ping", "add", "premium_analysis"]) assert.ok(report.tools.includes(name), mode);
  if (mode === "dynamic-tools") {
    assert.ok(report.listedAfterPayment.includes("confirm_add_payment"), mode);
    assert.ok(!report.tools.includes("confirm_add_payment"), mode);
  } else {
    assert.equal(report.tools.includes("confirm_add_payment"), mode !== "resubmit", mode);
  }
  assert.equal(text(report.done), "7", `${mode}: ${text(report.done)}`);
  assert.notEqual(report.done.isError, true, mode);
  assert.equal(report.bad.isError, true, mode);
  assert.match(text(report.bad), /nothing was charged/, mode);
  assert.equal(text(report.free), "pong", mode);
  if (report.first) {
    const s = report.first.structuredContent;
    assert.equal(report.first.isError, true, mode);
    assert.equal(s.status, "payment_required", mode);
    assert.equal(s.amount, 0.19, mode);
    assert.equal(s.amountMinor, 19, mode);
    assert.ok(!s.paymentUrl.includes(s.paymentId), mode);
    assert.equal(report.stolen.structuredContent.status, "refused", mode);
    assert.equal(report.stolen.isError, true, mode);
  } else if (mode === "progress") {
    assert.ok(report.paidFromProgress, mode);
  }
}

for (const mode of MODES) {
  test(`the example over streamable HTTP: ${mode}`, needsService, async () => {
    const example = await httpExample(mode);
    try {
      for (let i = 0; i < 2; i++) {
        // Two agents in turn, each its own MCP session.
        const client = newClient(mode);
        await client.connect(new StreamableHTTPClientTransport(new URL(example.url)));
        check(await agentRun(client, mode), mode);
        await client.close();
      }
    } finally {
      await example.stop();
    }
  });
}

for (const mode of ["two-step", "resubmit", "dynamic-tools"]) {
  test(`the example over stateless streamable HTTP: ${mode}`, needsService, async () => {
    const example = await httpExample(mode, ["--stateless"]);
    try {
      const client = newClient(mode);
      await client.connect(new StreamableHTTPClientTransport(new URL(example.url)));
      const report = await agentRun(client, mode);
      if (mode === "dynamic-tools") report.tools = report.tools.filter((name) => name !== "confirm_add_payment" && name !== "confirm_premium_analysis_payment");
      check(report, mode);
      await client.close();
    } finally {
      await example.stop();
    }
  });
}

for (const mode of MODES) {
  test(`the example over stdio: ${mode}`, needsService, async () => {
    const client = newClient(mode);
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [EXAMPLE, "--mode", mode], env: exampleEnv(), stderr: "ignore" }));
    try {
      check(await agentRun(client, mode), mode);
    } finally {
      await client.close();
    }
  });
}

test("the example lists every mode and refuses unknown ones", () => {
  const shown = spawnSync(process.execPath, [EXAMPLE, "--help"], { encoding: "utf8" });
  assert.equal(shown.status, 0);
  for (const mode of MODES) assert.ok(shown.stdout.includes(mode), mode);
  const refused = spawnSync(process.execPath, [EXAMPLE, "--mode", "teleport"], {
    encoding: "utf8",
    env: { ...process.env, WALLEOT_API_KEY: "sk_test_x" },
    timeout: 30_000,
  });
  assert.equal(refused.status, 2, refused.stderr);
  assert.match(refused.stderr, /unknown mode/);
  const keyless = { ...process.env };
  delete keyless.WALLEOT_API_KEY;
  const noKey = spawnSync(process.execPath, [EXAMPLE], { encoding: "utf8", env: keyless, timeout: 30_000 });
  assert.equal(noKey.status, 2, noKey.stderr);
  assert.match(noKey.stderr, /WALLEOT_API_KEY/);
});
