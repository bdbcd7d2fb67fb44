// RedisStore against a real Redis (WALLEOT_REDIS_URL): the state machine, retention by
// key expiry, and the caps and claims that hold across store instances, as they would
// across the processes of one server.

import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { Redis } from "ioredis";

import { RedisStore, StoreUnavailable, TooManyOpen } from "walleot";
import { closedPort, needsRedis, payment, redisUrl, withPrefix } from "./support.mjs";

const now = () => Date.now() / 1000;

/** Runs `body` with `count` stores sharing a fresh prefix, and a plain client to look at the keys. */
async function withStores(count, options, body) {
  await withPrefix(async (prefix) => {
    const stores = Array.from({ length: count }, () => new RedisStore({ url: redisUrl, prefix, ...options }));
    const keys = new Redis(redisUrl);
    try {
      await body(stores, keys, prefix);
    } finally {
      keys.disconnect();
      await Promise.all(stores.map((s) => s.close()));
    }
  });
}

test("redis: a payment is claimed once and its result kept", needsRedis, async () => {
  await withStores(1, {}, async ([s]) => {
    const p = { ...payment("p1", { expires: now() + 600 }), subject: "alice" };
    await s.put(p);
    const found = await s.get("p1");
    assert.equal(found.state, "awaiting");
    assert.deepEqual(found.payment, p);
    assert.equal(found.result, undefined);
    assert.equal((await s.claim("p1")).state, "awaiting"); // this caller runs the tool
    assert.equal((await s.claim("p1")).state, "running"); // another waits
    await s.ran("p1", { content: [{ type: "text", text: "3" }] }, true);
    const ran = await s.claim("p1");
    assert.equal(ran.state, "ran");
    assert.equal(ran.succeeded, true);
    assert.equal(ran.result.content[0].text, "3");
    await s.finish("p1", { content: [{ type: "text", text: "3" }] }, true);
    await s.finish("p1", { content: [], isError: true }, false); // done once: ignored
    const done = await s.claim("p1");
    assert.equal(done.state, "done");
    assert.equal(done.result.content[0].text, "3");
    assert.equal(await s.claim("unknown"), undefined);
    assert.equal(await s.get("unknown"), undefined);
    // A payment put again (a retried put) is not reset.
    await s.put(p);
    assert.equal((await s.get("p1")).state, "done");
  });
});

test("redis: concurrent claims from two stores let exactly one caller run", needsRedis, async () => {
  await withStores(2, {}, async (stores) => {
    await stores[0].put(payment("p1", { expires: now() + 600 }));
    const claims = await Promise.all(Array.from({ length: 20 }, (_, i) => stores[i % 2].claim("p1")));
    assert.equal(claims.filter((c) => c.state === "awaiting").length, 1);
  });
});

test("redis: a retried claim is answered as its own", needsRedis, async () => {
  // A claim whose reply was lost is sent again: the caller that made it still runs the tool.
  await withStores(1, {}, async ([s], _keys, prefix) => {
    await s.put(payment("p1", { expires: now() + 600 }));
    const claim = (token) => s.client.walleotClaim(`${prefix}pay:p1`, `${prefix}open`, "p1", `${prefix}open:`, token, 60_000);
    const states = [];
    for (const token of ["token-a", "token-a", "token-b"]) states.push((await claim(token))[1]);
    assert.deepEqual(states, ["awaiting", "awaiting", "running"]);
  });
});

test("redis: open counts go by owner and open links, without a scan", needsRedis, async () => {
  await withStores(1, {}, async ([s], keys, prefix) => {
    const t = now();
    await s.put(payment("p1", { owner: "alice", expires: t + 100 }));
    await s.put(payment("p2", { owner: "alice", expires: t + 100 }));
    await s.put(payment("p3", { owner: "bob", expires: t + 100 }));
    await s.put(payment("p4", { owner: "alice", expires: t - 1 })); // its link expired
    assert.deepEqual(await s.openCounts("alice"), { mine: 2, total: 3 });
    await s.claim("p1");
    assert.deepEqual(await s.openCounts("alice"), { mine: 1, total: 2 }); // paid and running: no longer open
    assert.deepEqual(await s.openCounts("carol"), { mine: 0, total: 2 });
    // One sorted set per owner and one for all, scored by link expiry.
    assert.deepEqual(await keys.zrange(`${prefix}open:alice`, 0, -1), ["p2"]);
    assert.deepEqual((await keys.zrange(`${prefix}open`, 0, -1)).sort(), ["p2", "p3"]);
    assert.ok(Math.abs(Number(await keys.zscore(`${prefix}open:alice`, "p2")) - (t + 100)) < 0.01);
  });
});

test("redis: retention is by key expiry", needsRedis, async () => {
  await withStores(1, { afterExpirySeconds: 3600, resultsSeconds: 7200 }, async ([s], keys, prefix) => {
    const near = async (key, ms) => {
      const left = await keys.pttl(key);
      assert.ok(Math.abs(left - ms) < 5_000, `${key}: ${left} ms left, not about ${ms}`);
    };
    await s.put(payment("p1", { owner: "alice", expires: now() + 100 }));
    // Unpaid: kept until a retention after its link expires; the owner's set until the link does.
    await near(`${prefix}pay:p1`, 3_700_000);
    await near(`${prefix}open:alice`, 100_000);
    await near(`${prefix}open`, 100_000);
    // Running or settling: at least the longer retention from its last step.
    await s.claim("p1");
    await near(`${prefix}pay:p1`, 7_200_000);
    await s.ran("p1", {}, true);
    await near(`${prefix}pay:p1`, 7_200_000);
    // Done: the results retention from its settlement.
    await s.finish("p1", {}, true);
    await near(`${prefix}pay:p1`, 7_200_000);
  });
});

test("redis: unpaid payments and old results are dropped when due", needsRedis, async () => {
  await withStores(1, { afterExpirySeconds: 1, resultsSeconds: 1 }, async ([s]) => {
    const t = now();
    await s.put(payment("unpaid", { expires: t - 0.5 })); // kept for about half a second more
    await s.put(payment("paid", { expires: t + 600 }));
    await s.claim("paid");
    await s.ran("paid", {}, true);
    await s.finish("paid", {}, true); // kept for a second
    assert.notEqual(await s.get("unpaid"), undefined);
    assert.notEqual(await s.get("paid"), undefined);
    await sleep(800);
    assert.equal(await s.get("unpaid"), undefined);
    assert.notEqual(await s.get("paid"), undefined);
    await sleep(500);
    assert.equal(await s.get("paid"), undefined);
    // A payment already past its retention is not kept at all.
    await s.put(payment("stale", { expires: t - 5 }));
    assert.equal(await s.get("stale"), undefined);
  });
});

test("redis: the caps hold across two stores", needsRedis, async () => {
  await withStores(2, {}, async (stores) => {
    const later = now() + 600;
    const caps = { perOwner: 3, total: 5 };
    const put = (s, id, owner) =>
      s.put(payment(id, { owner, expires: later }), caps).then(
        () => "kept",
        (e) => {
          assert.ok(e instanceof TooManyOpen, String(e));
          return e.scope;
        },
      );
    // Ten at once for one owner, through both stores: three are kept.
    let outcomes = await Promise.all(Array.from({ length: 10 }, (_, i) => put(stores[i % 2], `a${i}`, "alice")));
    assert.equal(outcomes.filter((o) => o === "kept").length, 3);
    assert.equal(outcomes.filter((o) => o === "owner").length, 7);
    assert.deepEqual(await stores[0].openCounts("alice"), { mine: 3, total: 3 });
    assert.deepEqual(await stores[1].openCounts("alice"), { mine: 3, total: 3 });
    // The server-wide cap: two more for others, then none.
    outcomes = await Promise.all(Array.from({ length: 6 }, (_, i) => put(stores[i % 2], `b${i}`, `caller${i}`)));
    assert.equal(outcomes.filter((o) => o === "kept").length, 2);
    assert.equal(outcomes.filter((o) => o === "total").length, 4);
    // A claimed payment makes room.
    let kept;
    for (let i = 0; i < 10 && kept === undefined; i++) if (await stores[0].get(`a${i}`)) kept = `a${i}`;
    assert.equal((await stores[1].claim(kept)).state, "awaiting");
    assert.equal(await put(stores[0], "a-next", "alice"), "kept");
    assert.equal(await put(stores[1], "a-more", "alice"), "owner");
  });
});

test("redis: a Redis that is down fails every step quickly", async () => {
  const s = new RedisStore({ url: `redis://127.0.0.1:${await closedPort()}`, prefix: "walleot-test:down:", timeout: 2 });
  try {
    const started = Date.now();
    const steps = [
      () => s.put(payment("p1", { expires: now() + 600 })),
      () => s.get("p1"),
      () => s.openCounts("alice"),
      () => s.claim("p1"),
      () => s.ran("p1", {}, true),
      () => s.finish("p1", {}, true),
    ];
    for (const step of steps) {
      await assert.rejects(step(), (e) => e instanceof StoreUnavailable && /Redis payment store failed/.test(e.message));
    }
    assert.ok(Date.now() - started < 5_000, `${Date.now() - started} ms`);
  } finally {
    await s.close();
  }
});
