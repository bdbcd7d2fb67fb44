// Payment ids, the in-memory store of pending payments, and DYNAMIC_TOOLS' open confirms.

import assert from "node:assert/strict";
import { test } from "node:test";

import { OpenConfirms } from "../dist/confirms.js";
import { newPaymentId } from "../dist/payments.js";
import { MemoryStore, StoreFull, TooManyOpen } from "walleot";
import { payment } from "./support.mjs";

/** A store whose clock the test sets. */
function store(options = {}) {
  const clock = { now: 0 };
  return { clock, store: new MemoryStore({ ...options, now: () => clock.now }) };
}

test("a payment is claimed once and its result kept", async () => {
  const { store: s } = store();
  await s.put(payment("p1"));
  assert.equal((await s.claim("p1")).state, "awaiting"); // this caller runs the tool
  assert.equal((await s.claim("p1")).state, "running"); // another waits
  await s.ran("p1", { content: [] }, true);
  assert.equal((await s.claim("p1")).state, "ran"); // settle, then hand out
  await s.finish("p1", { content: [{ type: "text", text: "3" }] }, true);
  const found = await s.claim("p1");
  assert.equal(found.state, "done");
  assert.equal(found.result.content[0].text, "3");
  assert.equal(await s.claim("unknown"), undefined);
});

test("concurrent claims let exactly one caller run", async () => {
  const { store: s } = store();
  await s.put(payment("p1"));
  const claims = await Promise.all(Array.from({ length: 10 }, () => s.claim("p1")));
  assert.equal(claims.filter((c) => c.state === "awaiting").length, 1);
});

test("open counts go by owner and open links", async () => {
  const { clock, store: s } = store();
  await s.put(payment("p1", { owner: "alice", expires: 100 }));
  await s.put(payment("p2", { owner: "alice", expires: 100 }));
  await s.put(payment("p3", { owner: "bob", expires: 100 }));
  await s.put(payment("p4", { owner: "alice", expires: 10 }));
  clock.now = 50;
  assert.deepEqual(await s.openCounts("alice"), { mine: 2, total: 3 }); // p4's link expired
  await s.claim("p1");
  assert.deepEqual(await s.openCounts("alice"), { mine: 1, total: 2 }); // paid and running: no longer open
});

test("retention drops unpaid payments and old results", async () => {
  const { clock, store: s } = store({ afterExpirySeconds: 100, resultsSeconds: 50 });
  await s.put(payment("p1", { expires: 10 }));
  await s.put(payment("p2", { expires: 10 }));
  await s.claim("p2");
  clock.now = 5;
  await s.ran("p2", {}, true);
  await s.finish("p2", {}, true);
  clock.now = 109;
  assert.notEqual(await s.get("p1"), undefined);
  clock.now = 110;
  assert.equal(await s.get("p1"), undefined);
  clock.now = 54;
  assert.notEqual(await s.get("p2"), undefined);
  clock.now = 55;
  assert.equal(await s.get("p2"), undefined);
});

test("the store keeps within its budget", async () => {
  const big = "w".repeat(3000);
  const { clock, store: s } = store({ budgetBytes: 12_000 });
  for (let i = 0; i < 3; i++) await s.put(payment(`p${i}`, { expires: 100, data: big }));
  await assert.rejects(s.put(payment("p3", { expires: 100, data: big })), StoreFull);
  // Once the links expired, new payments take the room of the old.
  clock.now = 200;
  await s.put(payment("p4", { expires: 500, data: big }));
  assert.notEqual(await s.get("p4"), undefined);

  // A run in flight is never dropped.
  const second = store({ budgetBytes: 10_000 });
  await second.store.put(payment("run", { expires: 1, data: big }));
  await second.store.claim("run");
  second.clock.now = 10;
  for (let i = 0; i < 5; i++) {
    await second.store.put(payment(`q${i}`, { expires: 1, data: big })).catch((e) => assert.ok(e instanceof StoreFull));
  }
  assert.equal((await second.store.get("run")).state, "running");
});

test("a put keeps within the caps on open payments", async () => {
  const { clock, store: s } = store();
  const caps = { perOwner: 2, total: 3 };
  for (let i = 0; i < 2; i++) await s.put(payment(`a${i}`, { owner: "alice", expires: 100 }), caps);
  await assert.rejects(s.put(payment("a2", { owner: "alice", expires: 100 }), caps), (e) => {
    assert.ok(e instanceof TooManyOpen);
    assert.deepEqual([e.scope, e.mine, e.total], ["owner", 2, 2]);
    return true;
  });
  await s.put(payment("b0", { owner: "bob", expires: 100 }), caps);
  await assert.rejects(s.put(payment("b1", { owner: "bob", expires: 100 }), caps), (e) => e.scope === "total");
  assert.equal(await s.get("a2"), undefined);
  assert.equal(await s.get("b1"), undefined);
  // A claimed payment, or one whose link expired, no longer takes a place.
  await s.claim("a0");
  await s.put(payment("a3", { owner: "alice", expires: 100 }), caps);
  clock.now = 150;
  await s.put(payment("a4", { owner: "alice", expires: 300 }), caps);
});

test("a confirm tool shows while a payment of its caller is open", () => {
  const confirms = new OpenConfirms();
  assert.ok(confirms.add("alice", "add", "p1", 100, 0));
  assert.ok(!confirms.add("alice", "add", "p2", 100, 0), "already shown");
  assert.ok(!confirms.isOpen("bob", "add", 0));
  assert.ok(!confirms.close("alice", "add", "p1", 0), "p2 is still open");
  assert.ok(confirms.close("alice", "add", "p2", 0));
  assert.ok(!confirms.isOpen("alice", "add", 0));
  // Expired payments close by themselves, and nothing is kept for them.
  confirms.add("alice", "add", "p3", 100, 0);
  assert.ok(confirms.isOpen("alice", "add", 99));
  assert.ok(!confirms.isOpen("alice", "add", 100));
  assert.equal(confirms.size, 0);
});

test("payment ids are long random secrets", () => {
  const ids = new Set(Array.from({ length: 1000 }, newPaymentId));
  assert.equal(ids.size, 1000);
  for (const id of [...ids].slice(0, 10)) {
    assert.match(id, /^pay_[A-Za-z0-9_-]{32}$/); // 192 bits, base64url
  }
});
