// The arguments hash is canonical, and equal to the Python SDK's for the same JSON.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { argumentsHash } from "walleot";

const vectors = JSON.parse(readFileSync(new URL("./fixtures/python-hashes.json", import.meta.url), "utf8"));

test("the hash equals the Python SDK's on fixed vectors", () => {
  assert.ok(vectors.length >= 10);
  for (const { json, hash } of vectors) {
    assert.equal(argumentsHash(JSON.parse(json)), hash, json);
  }
});

test("the hash is canonical", () => {
  assert.equal(
    argumentsHash({ a: 1, b: { y: [1, { q: 1, p: 2 }], x: "é" } }),
    argumentsHash({ b: { x: "é", y: [1, { p: 2, q: 1 }] }, a: 1 }),
  );
  assert.notEqual(argumentsHash({ a: 1, b: 2 }), argumentsHash({ a: 2, b: 1 }));
  assert.notEqual(argumentsHash({ a: [1, 2] }), argumentsHash({ a: [2, 1] }));
  assert.notEqual(argumentsHash({ a: "1" }), argumentsHash({ a: 1 }));
  assert.equal(argumentsHash({ b: 2, a: 1 }), createHash("sha256").update('{"a":1,"b":2}').digest("hex"));
});

test("values JSON cannot carry are refused", () => {
  for (const bad of [{ a: NaN }, { a: Infinity }, { a: 1n }]) {
    assert.throws(() => argumentsHash(bad), TypeError);
  }
});
