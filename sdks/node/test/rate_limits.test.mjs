// A service that rate limits this server: the wait is reported, and a paid result is
// handed out only once its funds are captured. Needs a service allowing few POSTs a
// minute and an address that moves its clock on (see support.mjs).

import assert from "node:assert/strict";
import { test } from "node:test";

import { limited, needsLimited, required, sessionOf, status, text, withServer } from "./support.mjs";

test("a rate-limited service is reported with its wait", needsLimited, async () => {
  await limited.nextWindow();
  await withServer(limited, {}, async (server) => {
    const client = await server.connect();
    await limited.exhaustPosts();
    const answer = await client.callTool({ name: "add", arguments: { a: 1, b: 1 } });
    assert.equal(answer.isError, true);
    assert.equal(status(answer), "rate_limited");
    assert.match(text(answer), /rate limited by the payment service, retry in \d+ s/);
    assert.doesNotMatch(text(answer), /could not be reached/);
    const wait = answer.structuredContent.retryAfter;
    assert.ok(wait >= 1 && wait <= 60, String(wait));
  });
});

test("a result is handed out only after its capture", needsLimited, async () => {
  await limited.nextWindow();
  await withServer(limited, {}, async (server) => {
    const client = await server.connect();
    const first = await required(assert, client, "add", { a: 1, b: 2 });
    const session = sessionOf(first);
    const confirm = { name: "confirm_add_payment", arguments: { payment_id: first.structuredContent.paymentId } };
    await limited.pay(session);
    await limited.exhaustPosts();
    for (let i = 0; i < 2; i++) {
      const waiting = await client.callTool(confirm);
      assert.equal(status(waiting), "settling", text(waiting));
      assert.equal(waiting.isError, true);
      assert.notEqual(text(waiting), "3");
      assert.ok(waiting.structuredContent.retryAfter >= 1);
      assert.equal((await limited.session(session)).captureStatus, "held");
    }
    assert.deepEqual(server.runs, { add: 1 });
    await limited.nextWindow();
    const done = await client.callTool(confirm);
    assert.equal(text(done), "3");
    assert.notEqual(done.isError, true);
    assert.equal((await limited.session(session)).captureStatus, "captured");
    assert.equal(text(await client.callTool(confirm)), "3");
    assert.deepEqual(server.runs, { add: 1 });
  });
});
