// The shapes of every answer that is not the tool's result: word for word the Python SDK's.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as answers from "../dist/answers.js";
import { Price, ServiceError } from "walleot";

const fixtures = JSON.parse(readFileSync(new URL("./fixtures/python-answers.json", import.meta.url), "utf8"));

function pending(price) {
  return { ...fixtures.payment, arguments: { data: "x" }, argumentsHash: "h", price, subject: undefined, owner: "o", expiresUnix: 0 };
}

function make([kind, ...args]) {
  switch (kind) {
    case "paymentRequired": {
      const [currency, amount, nextStep, status] = args;
      const price = Price.of(amount, currency);
      return answers.paymentRequired(pending(price), price, nextStep, status);
    }
    case "settling":
      return answers.settling(pending(Price.of(0.5, "USD")), args[0], args[1]);
    case "serviceFailure":
      return answers.serviceFailure(new ServiceError("GET http://10.0.0.7:8080/v1/sessions: refused", args[0] ?? undefined, undefined, args[1] ?? undefined));
    case "storeFailure":
      return answers.storeFailure(new Error("x"));
    default:
      return answers[kind](...args);
  }
}

test("every answer is byte for byte the Python SDK's", () => {
  const names = Object.keys(fixtures.answers);
  assert.ok(names.length >= 15);
  for (const name of names) {
    const { call, answer } = fixtures.answers[name];
    assert.equal(JSON.stringify(make(call)), JSON.stringify(answer), name);
  }
});

test("every answer that is not a result is an error with a status", () => {
  const p = pending(Price.of(0.5, "USD"));
  const cases = {
    settling: answers.settling(p, 0.2, "confirm"),
    refused: answers.unknownPayment("add"),
    rate_limited: answers.serviceFailure(new ServiceError("x", 429, "rate_limited", 42)),
    error: answers.serviceFailure(new ServiceError("GET http://10.0.0.7:8080/v1/sessions: refused")),
  };
  for (const [status, answer] of Object.entries(cases)) {
    assert.equal(answer.isError, true, status);
    assert.equal(answer.structuredContent.status, status);
  }
  assert.equal(cases.settling.structuredContent.retryAfter, 1);
  assert.equal(cases.rate_limited.structuredContent.retryAfter, 42);
  assert.match(cases.rate_limited.content[0].text, /rate limited by the payment service, retry in 42 s/);
  const down = cases.error.content[0].text;
  assert.match(down, /could not be reached/);
  assert.doesNotMatch(down, /10\.0\.0\.7/);
  assert.match(cases.refused.content[0].text, /Nothing is charged/);
});
