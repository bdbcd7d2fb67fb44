// ELICITATION and AUTO with the official MCP client against a real service: form and
// URL elicitation (a server request within the call), and every way out.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Mode } from "walleot";
import { needsService, service, sessionOf, status, text, withServer } from "./support.mjs";

/** An elicitation handler: pays the linked session (for "accept"), then answers. */
function paying(action = "accept", content = { paid: true }, seen = []) {
  return async (params) => {
    const shown = params.mode === "url" ? params.url : params.message;
    const session = sessionOf(shown);
    seen.push({ params, session });
    if (action === "accept" && content.paid !== false) await service.pay(session);
    return action === "accept" ? { action, content } : { action };
  };
}

for (const mode of [Mode.ELICITATION, Mode.AUTO]) {
  for (const transport of ["http", "memory"]) {
    test(`${mode} over ${transport}: pays and runs in the same call`, needsService, async () => {
      await withServer(service, { mode, transport }, async (server) => {
        const seen = [];
        const client = await server.connect({ elicitation: paying("accept", { paid: true }, seen) });
        const done = await client.callTool({ name: "add", arguments: { a: 2, b: 5 } });
        assert.equal(text(done), "7", text(done));
        assert.notEqual(done.isError, true);
        const { params, session } = seen[0];
        assert.equal(params.mode, "url");
        assert.match(params.elicitationId, /^pay_/);
        assert.ok(!params.url.includes(params.elicitationId));
        assert.equal((await service.session(session)).captureStatus, "captured");
        assert.deepEqual(server.runs, { add: 1 });
      });
    });
  }
}

test("a form elicitation pays and runs in the same call", needsService, async () => {
  await withServer(service, { mode: Mode.ELICITATION }, async (server) => {
    const seen = [];
    const client = await server.connect({ elicitation: paying("accept", { paid: true }, seen), elicitationModes: ["form"] });
    const done = await client.callTool({ name: "add", arguments: { a: 3, b: 4 } });
    assert.equal(text(done), "7", text(done));
    assert.equal(seen[0].params.mode, "form");
    assert.deepEqual(seen[0].params.requestedSchema.required, ["paid"]);
  });
});

test("a payer who declines cancels the payment", needsService, async () => {
  await withServer(service, { mode: Mode.ELICITATION }, async (server) => {
    const seen = [];
    const client = await server.connect({ elicitation: paying("decline", undefined, seen) });
    const refused = await client.callTool({ name: "add", arguments: { a: 1, b: 1 } });
    assert.equal(refused.isError, true);
    assert.equal(status(refused), "refused");
    assert.match(text(refused), /declined/);
    assert.equal((await service.session(seen[0].session)).status, "cancelled");
    assert.deepEqual(server.runs, {});
  });
});

test("a dismissed elicitation leaves the link payable", needsService, async () => {
  await withServer(service, { mode: Mode.ELICITATION }, async (server) => {
    const client = await server.connect({ elicitation: paying("cancel") });
    const answer = await client.callTool({ name: "add", arguments: { a: 1, b: 1 } });
    assert.equal(answer.isError, true);
    assert.equal(status(answer), "payment_required", text(answer));
    assert.doesNotMatch(text(answer), /declined/);
    const session = sessionOf(answer);
    assert.equal((await service.session(session)).status, "pending");
    await service.pay(session);
    const done = await client.callTool({ name: "confirm_add_payment", arguments: { payment_id: answer.structuredContent.paymentId } });
    assert.equal(text(done), "2");
  });
});

test("a form that says unpaid is answered at once", needsService, async () => {
  await withServer(service, { mode: Mode.ELICITATION }, async (server) => {
    const seen = [];
    const client = await server.connect({ elicitation: paying("accept", { paid: false }, seen), elicitationModes: ["form"] });
    const started = Date.now();
    const answer = await client.callTool({ name: "add", arguments: { a: 1, b: 1 } });
    assert.ok(Date.now() - started < 5000);
    assert.equal(answer.isError, true);
    assert.equal(status(answer), "pending", text(answer));
    assert.equal(seen[0].params.mode, "form");
    assert.deepEqual(server.runs, {});
  });
});

for (const mode of [Mode.ELICITATION, Mode.AUTO]) {
  test(`${mode}: a client without elicitation gets two steps`, needsService, async () => {
    await withServer(service, { mode }, async (server) => {
      const client = await server.connect();
      const answer = await client.callTool({ name: "add", arguments: { a: 2, b: 3 } });
      assert.equal(status(answer), "payment_required");
      assert.equal(answer.isError, true);
      await service.pay(sessionOf(answer));
      const done = await client.callTool({ name: "confirm_add_payment", arguments: { payment_id: answer.structuredContent.paymentId } });
      assert.equal(text(done), "5");
    });
  });
}
