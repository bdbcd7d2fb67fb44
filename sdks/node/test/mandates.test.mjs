// Mandates with the official MCP client against a real service: a call whose caller the
// payer granted a mandate for runs in its first round trip, in every mode, captured
// after success and released after failure; past the budget, or for another caller,
// the mode's own flow asks again. A stdio (or in-process) server names its
// installation, whose reference is kept in a file; over HTTP without a subject nobody
// is named.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { Mode, Walleot } from "walleot";
import { Counted, needsService, service, sessionOf, status, text } from "./support.mjs";

/** The server authenticates its users by bearer: the credential is the subject, and so the customer. */
const bearer = (extra) => extra.requestInfo?.headers?.authorization || undefined;

/**
 * A payer pays a first session of `customer` and grants the merchant a mandate with
 * `limits` (cents). Answers the mandate's id.
 */
async function grant(customer, limits) {
  const created = await service.request("POST", "sessions", { amount: 19, currency: "usd", customer });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  await service.pay(created.body.sessionId);
  const granted = await service.request("POST", `test_helpers/sessions/${created.body.sessionId}/grant_mandate`, limits);
  assert.equal(granted.status, 200, JSON.stringify(granted.body));
  return granted.body.mandateId;
}

async function mandate(id) {
  const { status: code, body } = await service.request("GET", `mandates/${id}`);
  assert.equal(code, 200, JSON.stringify(body));
  return body;
}

/** The session of a payment a mandate paid, found through the server's store. */
async function paidSession(server, answer) {
  const kept = await server.walleot.store.get(answer._meta.payment.paymentId);
  return service.session(kept.payment.sessionId);
}

/** Counted with a tool at 0.19 that fails. */
class WithFlaky extends Counted {
  makeServer() {
    const server = super.makeServer();
    server.registerTool("flaky", { description: "Fails.", price: { amount: 0.19, currency: "USD" } }, async () => {
      this.ran("flaky");
      throw new Error("the tool flaked");
    });
    return server;
  }
}

async function withCounted(Kind, options, body) {
  const server = new Kind(service, options);
  try {
    return await body(server);
  } finally {
    await server.close();
  }
}

/** Runs `body` with the environment variables of `vars` set (undefined: unset), then puts them back. */
async function withEnv(vars, body) {
  const saved = Object.fromEntries(Object.keys(vars).map((name) => [name, process.env[name]]));
  const set = (values) => {
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
  set(vars);
  try {
    return await body();
  } finally {
    set(saved);
  }
}

function stateDir() {
  return mkdtempSync(join(tmpdir(), "walleot-state-"));
}

test("a covered call runs in its first round trip in every mode", needsService, async () => {
  const credential = `Bearer agent-${randomUUID()}`;
  const granted = await grant(credential, { perCallLimit: 50, periodLimit: { amount: 1000, per: "day" } });
  for (const mode of Object.values(Mode)) {
    await withCounted(Counted, { mode, identify: bearer }, async (server) => {
      let asked = 0;
      let changes = 0;
      const agent = await server.connect({
        credential,
        elicitation: async () => {
          asked += 1;
          return { action: "cancel" };
        },
        onListChanged: () => (changes += 1),
      });
      let progress = 0;
      const done = await agent.callTool({ name: "add", arguments: { a: 2, b: 3 } }, undefined, {
        onprogress: () => (progress += 1),
      });
      assert.equal(text(done), "5", `${mode}: ${text(done)}`);
      assert.notEqual(done.isError, true, mode);
      const paid = done._meta?.payment;
      assert.equal(paid?.mandateId, granted, mode);
      assert.match(paid.paymentId, /^pay_/);
      assert.deepEqual(
        { amount: paid.amount, amountMinor: paid.amountMinor, currency: paid.currency },
        { amount: 0.19, amountMinor: 19, currency: "USD" },
      );
      assert.deepEqual(server.runs, { add: 1 }, `${mode}: ran once`);
      assert.deepEqual({ asked, progress, changes }, { asked: 0, progress: 0, changes: 0 }, `${mode}: no link shown`);
      const session = await paidSession(server, done);
      assert.deepEqual(
        { customer: session.customer, mandateId: session.mandateId, status: session.status, captureStatus: session.captureStatus },
        { customer: credential, mandateId: granted, status: "paid", captureStatus: "captured" },
        mode,
      );
      // Nothing was left open: no confirm tool is listed for it.
      if (mode === Mode.DYNAMIC_TOOLS) {
        const names = (await agent.listTools()).tools.map((t) => t.name);
        assert.ok(!names.includes("confirm_add_payment"), names.join(", "));
      }
    });
  }
  const read = await mandate(granted);
  assert.equal(read.spentTotal, Object.values(Mode).length * 19, JSON.stringify(read));
});

test("a subject the service would refuse is named by its digest", needsService, async () => {
  const subject = `ユーザー-${randomUUID()}`;
  const digest = `sha256:${createHash("sha256").update(subject, "utf8").digest("hex")}`;
  const granted = await grant(digest, { perCallLimit: 50, totalLimit: 100 });
  await withCounted(Counted, { identify: () => subject }, async (server) => {
    const agent = await server.connect();
    const done = await agent.callTool({ name: "add", arguments: { a: 1, b: 2 } });
    assert.equal(text(done), "3", text(done));
    assert.equal(done._meta?.payment?.mandateId, granted);
    assert.equal((await paidSession(server, done)).customer, digest);
  });
});

test("past the budget, for another caller or after a failure, the flow asks again", needsService, async () => {
  const credential = `Bearer agent-${randomUUID()}`;
  const granted = await grant(credential, { perCallLimit: 20, periodLimit: { amount: 40, per: "day" } });
  await withCounted(WithFlaky, { identify: bearer }, async (server) => {
    const agent = await server.connect({ credential });

    // A tool that fails costs nothing, and gives the budget back.
    const failed = await agent.callTool({ name: "flaky", arguments: {} });
    assert.equal(failed.isError, true, text(failed));
    assert.match(text(failed), /the tool flaked/);
    assert.equal(failed._meta?.payment?.mandateId, granted);
    const released = await paidSession(server, failed);
    assert.deepEqual(
      { mandateId: released.mandateId, captureStatus: released.captureStatus },
      { mandateId: granted, captureStatus: "released" },
    );
    assert.equal((await mandate(granted)).remaining, 40);

    // Per call: premium_analysis (0.50) is over 0.20: a link, as without a mandate.
    const dear = await agent.callTool({ name: "premium_analysis", arguments: { data: "x" } });
    assert.equal(status(dear), "payment_required", text(dear));
    assert.equal((await service.session(sessionOf(dear))).mandateId, null);

    // The day's 0.40 covers two adds of 0.19, not a third.
    const outcomes = [];
    for (const b of [1, 2, 3]) {
      const answer = await agent.callTool({ name: "add", arguments: { a: 1, b } });
      outcomes.push(answer._meta?.payment === undefined ? status(answer) : text(answer));
    }
    assert.deepEqual(outcomes, ["2", "3", "payment_required"]);
    const read = await mandate(granted);
    assert.deepEqual({ spentInPeriod: read.spentInPeriod, remaining: read.remaining }, { spentInPeriod: 38, remaining: 2 });

    // Another caller of the same server is not covered.
    const other = await server.connect({ credential: `Bearer agent-${randomUUID()}` });
    const asked = await other.callTool({ name: "add", arguments: { a: 1, b: 1 } });
    assert.equal(status(asked), "payment_required", text(asked));
    assert.deepEqual(server.runs, { flaky: 1, add: 2 });
  });
});

test("the installation's reference is made once, kept, and gives way to the option and WALLEOT_CUSTOMER", async () => {
  const dir = stateDir();
  const make = (options = {}) =>
    new Walleot({ apiKey: "sk_test_x", baseUrl: "http://127.0.0.1:9", log: () => {}, ...options }).customer;
  try {
    await withEnv(
      { WALLEOT_STATE_DIR: join(dir, "state"), XDG_STATE_HOME: undefined, WALLEOT_CUSTOMER: undefined },
      async () => {
        const made = make();
        assert.match(made, /^inst_[A-Za-z0-9_-]{24}$/);
        assert.equal(readFileSync(join(dir, "state", "customer"), "utf8").trim(), made);
        assert.equal(make(), made, "read back, not made again");

        assert.equal(make({ customer: "user-42" }), "user-42");
        process.env.WALLEOT_CUSTOMER = "agent-7";
        assert.equal(make(), "agent-7");
        assert.equal(make({ customer: "user-42" }), "user-42");
        for (const invalid of ["", "a\nb", "x".repeat(256), "ユーザー"]) {
          assert.equal(make({ customer: invalid }), "agent-7", JSON.stringify(invalid));
          process.env.WALLEOT_CUSTOMER = invalid;
          assert.equal(make(), made, JSON.stringify(invalid));
          process.env.WALLEOT_CUSTOMER = "agent-7";
        }
      },
    );
    // Without WALLEOT_STATE_DIR: $XDG_STATE_HOME/walleot, else ~/.local/state/walleot.
    await withEnv({ WALLEOT_STATE_DIR: undefined, XDG_STATE_HOME: join(dir, "xdg"), WALLEOT_CUSTOMER: undefined }, async () => {
      const made = make();
      assert.equal(readFileSync(join(dir, "xdg", "walleot", "customer"), "utf8"), made);
    });
    await withEnv({ WALLEOT_STATE_DIR: undefined, XDG_STATE_HOME: undefined, HOME: join(dir, "home"), WALLEOT_CUSTOMER: undefined }, async () => {
      const made = make();
      assert.equal(readFileSync(join(dir, "home", ".local", "state", "walleot", "customer"), "utf8"), made);
    });
    // Where no file can be kept, nobody is named.
    writeFileSync(join(dir, "a-file"), "");
    await withEnv({ WALLEOT_STATE_DIR: join(dir, "a-file", "state"), WALLEOT_CUSTOMER: undefined }, async () => {
      assert.equal(make(), undefined);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("processes that start together share one installation reference", async () => {
  const dir = stateDir();
  const run = promisify(execFile);
  const script = 'import { Walleot } from "walleot"; process.stdout.write(String(new Walleot({ apiKey: "sk_test_x" }).customer));';
  try {
    const env = { ...process.env, WALLEOT_STATE_DIR: dir };
    delete env.WALLEOT_CUSTOMER;
    const cwd = fileURLToPath(new URL("..", import.meta.url));
    const runs = Array.from({ length: 4 }, () => run(process.execPath, ["--input-type=module", "-e", script], { env, cwd }));
    const seen = new Set((await Promise.all(runs)).map((r) => r.stdout));
    assert.equal(seen.size, 1, [...seen].join(", "));
    const [only] = seen;
    assert.match(only, /^inst_/);
    assert.equal(readFileSync(join(dir, "customer"), "utf8"), only);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("in process, payments name the installation, which a mandate covers; over HTTP without a subject nobody", needsService, async () => {
  const dir = stateDir();
  try {
    await withEnv({ WALLEOT_STATE_DIR: dir, WALLEOT_CUSTOMER: undefined }, async () => {
      await withCounted(Counted, { transport: "memory" }, async (server) => {
        const installation = readFileSync(join(dir, "customer"), "utf8");
        assert.equal(server.walleot.customer, installation);
        const client = await server.connect();
        const asked = await client.callTool({ name: "add", arguments: { a: 1, b: 1 } });
        assert.equal(status(asked), "payment_required", text(asked));
        assert.equal((await service.session(sessionOf(asked))).customer, installation);

        const granted = await grant(installation, { perCallLimit: 50, periodLimit: { amount: 500, per: "day" } });
        const done = await client.callTool({ name: "add", arguments: { a: 20, b: 22 } });
        assert.equal(text(done), "42", text(done));
        assert.equal(done._meta?.payment?.mandateId, granted);
        assert.equal((await paidSession(server, done)).captureStatus, "captured");
        assert.deepEqual(server.runs, { add: 1 });

        // The same reference over HTTP, without `identify`: nobody is named.
        await withCounted(Counted, { customer: installation }, async (http) => {
          assert.equal(http.walleot.customer, installation);
          const anyone = await http.connect({ credential: "Bearer anyone" });
          const link = await anyone.callTool({ name: "add", arguments: { a: 1, b: 1 } });
          assert.equal(status(link), "payment_required", text(link));
          assert.equal((await service.session(sessionOf(link))).customer, null);
        });
      });
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
