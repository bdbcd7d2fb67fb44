// Prices in major units become exact minor units, or are refused at registration.

import assert from "node:assert/strict";
import { test } from "node:test";

import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";

import { Mode, Price, PriceError, parseMode } from "walleot";

test("prices are exact minor units", () => {
  const cases = [
    [0.29, "USD", 29],
    [0.19, "usd", 19],
    [0.5, "USD", 50],
    ["0.50", "USD", 50],
    ["1.10", "EUR", 110],
    [2, "USD", 200],
    [500, "JPY", 500],
    ["500", "jpy", 500],
    [1.005, "KWD", 1005],
    ["1.2345", "CLF", 12345],
    [" 0.50 ", " usd ", 50],
    ["5e-1", "USD", 50],
    [99_999_999, "JPY", 99_999_999],
    [10n, "USD", 1000],
  ];
  for (const [amount, currency, minor] of cases) {
    const price = Price.of(amount, currency);
    assert.equal(price.minor, minor, `${String(amount)} ${currency}`);
    assert.equal(price.currency, currency.trim().toUpperCase());
  }
});

test("inexact or invalid prices are refused", () => {
  const cases = [
    [0, "USD"],
    [0.001, "USD"],
    [0.295, "USD"],
    [1.5, "JPY"],
    [-1, "USD"],
    [1, "XYZ"],
    ["abc", "USD"],
    ["", "USD"],
    [".", "USD"],
    [NaN, "USD"],
    [Infinity, "USD"],
    [true, "USD"],
    [null, "USD"],
    [undefined, "USD"],
    [{}, "USD"],
    [1_000_000, "USD"],
    [0.1 + 0.2, "USD"], // 0.30000000000000004: not what anyone meant
    [1, 840],
    [1, undefined],
  ];
  for (const [amount, currency] of cases) {
    assert.throws(() => Price.of(amount, currency), PriceError, `${String(amount)} ${String(currency)}`);
  }
});

test("refusals say what is wrong", () => {
  assert.throws(() => Price.of(0.001, "USD"), { message: "USD has 2 decimal places; `0.001` has more" });
  assert.throws(() => Price.of(1.5, "JPY"), { message: "JPY has 0 decimal places; `1.5` has more" });
  assert.throws(() => Price.of(1, "XYZ"), { message: "unknown currency `XYZ`: use an ISO 4217 code such as USD" });
  assert.throws(() => Price.of(0, "USD"), { message: "`0` is not a positive amount" });
});

test("meta and display show major units", () => {
  assert.deepEqual(Price.of(0.5, "USD").meta(), { amount: 0.5, currency: "USD" });
  assert.deepEqual(Price.of(500, "JPY").meta(), { amount: 500, currency: "JPY" });
  assert.equal(Price.of(0.19, "usd").display(), "0.19 USD");
  assert.equal(Price.of(7, "usd").display(), "7.00 USD");
  assert.equal(Price.of("1.234", "BHD").display(), "1.234 BHD");
  assert.equal(Price.of(500, "JPY").display(), "500 JPY");
});

test("a price is checked where it is written, not at the first call", () => {
  const server = new McpServer({ name: "prices", version: "0" });
  assert.throws(
    () =>
      server.registerTool(
        "too_fine",
        { inputSchema: { a: z.number() }, price: { amount: 0.001, currency: "USD" } },
        async () => ({ content: [] }),
      ),
    PriceError,
  );
  assert.throws(
    () => server.registerTool("no_shape", { price: 0.5 }, async () => ({ content: [] })),
    PriceError,
  );
  // A tool without a price registers as McpServer always did.
  const free = server.registerTool("free", { description: "x" }, async () => ({ content: [] }));
  assert.equal(free.description, "x");
});

test("modes parse in every spelling", () => {
  for (const raw of ["two-step", "TWO_STEP", "two_step", Mode.TWO_STEP, " Two-Step "]) {
    assert.equal(parseMode(raw), Mode.TWO_STEP);
  }
  assert.equal(parseMode("DYNAMIC_TOOLS"), Mode.DYNAMIC_TOOLS);
  assert.deepEqual(Object.keys(Mode), ["TWO_STEP", "RESUBMIT", "PROGRESS", "ELICITATION", "DYNAMIC_TOOLS", "AUTO"]);
  assert.throws(() => parseMode("teleport"), /unknown mode/);
});
