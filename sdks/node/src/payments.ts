/**
 * The life of a payment, the same in every mode: opened (a manual-capture session and
 * a secret payment id, within the caps on open payments), found again by its id and
 * checked against the tool, the caller and the arguments, run once when paid, settled
 * (captured after success, released after failure), and its result handed out only
 * once that is done, then kept for repeated confirmations.
 */

import { createHash, randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

import * as answers from "./answers.js";
import { ServiceClient, ServiceError, type Session } from "./client.js";
import { argumentsHash } from "./hash.js";
import type { Price } from "./price.js";
import { StoreFull, TooManyOpen, type PaymentStore, type PendingPayment, type ToolResult } from "./store.js";

/** Waits within one call are capped here; longer ones are left to the next confirm. */
const LONGEST_INLINE_WAIT = 2;
const SETTLE_ATTEMPTS = 3;

/** A fresh payment id: 192 random bits, the client's proof of the right to confirm. */
export function newPaymentId(): string {
  return "pay_" + randomBytes(24).toString("base64url");
}

export interface Caller {
  /** The authenticated subject, where the server names one: payments are bound to it. */
  subject: string | undefined;
  /**
   * What the per-caller cap counts by: subject, MCP session, connection, or over HTTP
   * without a session the Authorization credential. Undefined for a stateless request
   * without a credential, which has nothing to be told apart by.
   */
  owner: string | undefined;
  /**
   * The customer reference a mandate may cover: the subject, or a stdio server's
   * installation reference; none over HTTP without a subject.
   */
  customer: string | undefined;
}

/** The owner a credential stands for: its digest, so that a store never keeps it. */
export function credentialOwner(credential: string): string {
  return `credential:${createHash("sha256").update(credential, "utf8").digest("hex").slice(0, 32)}`;
}

/** Either the payment asked for, or the answer to give instead. */
export type Found = { payment: PendingPayment } | { answer: ToolResult };

/** A payment opened, with its session when a mandate of the payer paid it at creation. */
export type Started = { payment: PendingPayment; covered?: Session } | { answer: ToolResult };

/** Runs the tool through the rest of the server's own pipeline, with the given arguments. */
export type RunTool = (tool: string, args: Record<string, unknown>) => Promise<ToolResult>;

export interface PaymentsConfig {
  client: ServiceClient;
  store: PaymentStore;
  paymentTtl: number;
  maxOpenPerCaller: number;
  maxOpen: number;
  waitForPayment: number;
  log: answers.Log;
}

type Outcome = { outcome: "settled" | "lapsed" } | { outcome: "later"; wait: number };

export class Payments {
  readonly client: ServiceClient;
  readonly store: PaymentStore;
  private readonly config: PaymentsConfig;
  // Payments being opened right now, counted against the caps with the open ones.
  private readonly opening = new Map<string, number>();
  // One settlement at a time per payment, in this process.
  private readonly settling = new Map<string, Promise<void>>();

  constructor(config: PaymentsConfig) {
    this.config = config;
    this.client = config.client;
    this.store = config.store;
  }

  private get log(): answers.Log {
    return this.config.log;
  }

  /**
   * Opens a payment, checking the caps before the service is asked; the session names
   * the caller's customer reference, which a mandate of the payer may cover.
   */
  async start(tool: string, args: Record<string, unknown>, price: Price, caller: Caller): Promise<Started> {
    const now = Date.now() / 1000;
    const owner = caller.owner ?? "";
    let { mine, total } = await this.store.openCounts(owner);
    if (caller.owner !== undefined) mine += this.opening.get(owner) ?? 0;
    for (const count of this.opening.values()) total += count;
    if (caller.owner !== undefined && mine >= this.config.maxOpenPerCaller) return { answer: this.tooMany("owner", mine) };
    if (total >= this.config.maxOpen) return { answer: this.tooMany("total", mine) };
    this.opening.set(owner, (this.opening.get(owner) ?? 0) + 1);
    let session: Session;
    try {
      session = await this.client.createSession(
        price.minor,
        price.currency,
        `Tool call: ${tool}`,
        this.config.paymentTtl,
        undefined,
        bindingMetadata(tool, argumentsHash(args)),
        caller.customer,
      );
    } catch (e) {
      return { answer: this.failure(e) };
    } finally {
      const left = (this.opening.get(owner) ?? 1) - 1;
      if (left > 0) this.opening.set(owner, left);
      else this.opening.delete(owner);
    }
    const payment: PendingPayment = {
      paymentId: newPaymentId(),
      sessionId: session.sessionId,
      paymentUrl: session.url,
      tool,
      arguments: args,
      argumentsHash: argumentsHash(args),
      price,
      subject: caller.subject,
      owner,
      expiresAt: typeof session.expiresAt === "string" ? session.expiresAt : "",
      expiresUnix: now + this.config.paymentTtl,
    };
    try {
      // The caps again, atomically with the put: other processes sharing the store
      // may have opened payments since the counts above.
      await this.store.put(payment, {
        perOwner: caller.owner !== undefined ? this.config.maxOpenPerCaller : undefined,
        total: this.config.maxOpen,
      });
    } catch (e) {
      // Not kept, so nobody could confirm it: nobody must pay it either (nor keep
      // a mandate's funds held).
      const end = covered(session) ? this.client.releaseSession(payment.sessionId) : this.client.cancelSession(payment.sessionId);
      await end.catch(() => {});
      if (e instanceof TooManyOpen) return { answer: this.tooMany(e.scope, e.mine) };
      if (e instanceof StoreFull) {
        return {
          answer: answers.refusal("too many payments are open on this server; try again later. Nothing was charged."),
        };
      }
      return { answer: answers.storeFailure(e, this.log) };
    }
    return covered(session) ? { payment, covered: session } : { payment };
  }

  /** The refusal when a cap on open payments is reached: the caller's, or the server's. */
  private tooMany(scope: "owner" | "total", mine: number): ToolResult {
    const minutes = Math.ceil(this.config.paymentTtl / 60);
    if (scope === "owner") {
      return answers.refusal(
        `${mine} unpaid payments are open for this caller, the most allowed: pay one of them, ` +
          `or call again once they expire (within ${minutes} min). Nothing was charged.`,
      );
    }
    return answers.refusal(
      `too many unpaid payments are open on this server; try again within ${minutes} min. Nothing was charged.`,
    );
  }

  /**
   * The payment the caller may use for `tool`, or the refusal to answer. Without a
   * subject, holding the secret payment id is the right to confirm.
   */
  async find(paymentId: unknown, tool: string, caller: Caller): Promise<Found> {
    if (typeof paymentId !== "string") return { answer: answers.refusal("`payment_id` (a string) is required") };
    const found = await this.store.get(paymentId);
    if (found === undefined) return { answer: answers.unknownPayment(tool) };
    const payment = found.payment;
    // Another tool's or another subject's payment reads as unknown.
    if (payment.tool !== tool || (payment.subject !== undefined && payment.subject !== caller.subject)) {
      return { answer: answers.unknownPayment(tool) };
    }
    return { payment };
  }

  /** `find`, and the arguments must be those the payment was made for. */
  async findForCall(paymentId: unknown, tool: string, caller: Caller, args: Record<string, unknown>): Promise<Found> {
    const found = await this.find(paymentId, tool, caller);
    if ("payment" in found && found.payment.argumentsHash !== argumentsHash(args)) {
      return { answer: answers.refusal("this payment was made for other arguments; it cannot pay for this call") };
    }
    return found;
  }

  /** The answer to a failed call to the service. */
  failure(error: unknown): ToolResult {
    if (error instanceof ServiceError) return answers.serviceFailure(error, this.log);
    return answers.serviceFailure(new ServiceError(String(error)), this.log);
  }

  private checkPaid(p: PendingPayment, nextStep: string, session: Session): ToolResult | undefined {
    if (session.amount !== p.price.minor || String(session.currency ?? "").toUpperCase() !== p.price.currency) {
      return answers.refusal("the payment does not match this tool's price");
    }
    if (!sameMetadata(session.metadata, bindingMetadata(p.tool, p.argumentsHash))) {
      return answers.refusal("the payment was made for another tool call; it cannot pay for this one");
    }
    const status = session.status;
    const capture = session.captureStatus;
    if (status === "paid" && (capture === undefined || capture === null || capture === "held" || capture === "captured")) {
      return undefined;
    }
    if (status === "pending") return answers.paymentRequired(p, p.price, nextStep, "pending");
    return answers.refusal(
      `the payment is ${status}; nothing was charged. Call \`${p.tool}\` again for a new payment link.`,
    );
  }

  /**
   * Runs the tool of a paid payment once: checks the payment with the service (or the
   * session just `seen`), claims it, runs the tool, captures the held funds after
   * success (or releases them after failure), and hands out and keeps the result once
   * that is done.
   */
  async runPaid(p: PendingPayment, nextStep: string, run: RunTool, seen?: Session): Promise<ToolResult> {
    const found = await this.store.get(p.paymentId);
    if (found === undefined) return answers.unknownPayment(p.tool);
    if (found.state === "done") return found.result!;
    if (found.state === "ran") return this.settleAndAnswer(p, found.result!, found.succeeded, nextStep);
    if (found.state === "running") return this.waitForResult(p, nextStep);
    let session: Session;
    try {
      session = seen ?? (await this.client.getSession(p.sessionId));
    } catch (e) {
      return this.failure(e);
    }
    const refused = this.checkPaid(p, nextStep, session);
    if (refused !== undefined) return refused;
    const claimed = await this.store.claim(p.paymentId);
    if (claimed === undefined) return answers.unknownPayment(p.tool);
    if (claimed.state === "done") return claimed.result!;
    if (claimed.state === "ran") return this.settleAndAnswer(p, claimed.result!, claimed.succeeded, nextStep);
    if (claimed.state === "running") return this.waitForResult(p, nextStep);
    const { result, succeeded } = await this.runTool(p, run);
    try {
      await this.store.ran(p.paymentId, result, succeeded);
    } catch (e) {
      // The tool ran and the payer paid: settle and hand out the result all the same.
      // Only a repeated confirmation misses what the store did not keep.
      this.log(`the payment store did not keep the result of ${p.paymentId}: ${String(e)}`);
    }
    return this.settleAndAnswer(p, result, succeeded, nextStep);
  }

  private async runTool(p: PendingPayment, run: RunTool): Promise<{ result: ToolResult; succeeded: boolean }> {
    try {
      const result = await run(p.tool, p.arguments);
      return { result, succeeded: result.isError !== true };
    } catch (e) {
      // An MCP error the server raised instead of a result.
      this.log(`paid tool ${p.tool} failed: ${String(e)}`);
      const message = e instanceof Error && e.message ? e.message : `Error executing tool ${p.tool}`;
      return { result: answers.toolFailure(message), succeeded: false };
    }
  }

  /**
   * Settles a payment whose tool ran, then answers: the result once captured, a
   * "being settled" answer while the service does not capture, a refusal if the hold
   * lapsed first. One settlement of a payment at a time in this process.
   */
  private async settleAndAnswer(
    p: PendingPayment,
    result: ToolResult,
    succeeded: boolean,
    nextStep: string,
  ): Promise<ToolResult> {
    const before = this.settling.get(p.paymentId) ?? Promise.resolve();
    let done!: () => void;
    const gate = new Promise<void>((resolve) => (done = resolve));
    const mine = before.then(() => gate);
    this.settling.set(p.paymentId, mine);
    await before;
    try {
      // A store that fails here: settle anyway, a capture under its key is never doubled.
      const found = await this.store.get(p.paymentId).catch(() => undefined);
      if (found?.state === "done") return found.result!;
      return await this.settleOnce(p, result, succeeded, nextStep);
    } finally {
      done();
      if (this.settling.get(p.paymentId) === mine) this.settling.delete(p.paymentId);
    }
  }

  private async settleOnce(p: PendingPayment, result: ToolResult, succeeded: boolean, nextStep: string): Promise<ToolResult> {
    const settled = await this.settle(p, succeeded);
    if (settled.outcome === "settled") {
      await this.keep(p, result, succeeded);
      return result;
    }
    if (settled.outcome === "later") {
      // A failed tool's answer costs nothing; the next confirmation retries the release.
      return succeeded ? answers.settling(p, settled.wait, nextStep) : result;
    }
    const refused = answers.refusal(
      "the payer's held funds lapsed before the payment could be captured: nothing was charged, and the " +
        `result is not handed out. Call \`${p.tool}\` again for a new payment link.`,
    );
    await this.keep(p, refused, false);
    return refused;
  }

  /** Keeps a settled result; a store that fails then costs only repeated confirmations. */
  private async keep(p: PendingPayment, result: ToolResult, succeeded: boolean): Promise<void> {
    try {
      await this.store.finish(p.paymentId, result, succeeded);
    } catch (e) {
      this.log(`the payment store did not keep the settled result of ${p.paymentId}: ${String(e)}`);
    }
  }

  /** Captures (or releases) the held funds, retrying briefly under one idempotency key. */
  private async settle(p: PendingPayment, capture: boolean): Promise<Outcome> {
    const action = capture ? "capture" : "release";
    const key = `walleot-${action}-${p.sessionId}`;
    let backoff = 0.2;
    for (let attempt = 1; attempt <= SETTLE_ATTEMPTS; attempt++) {
      let error: ServiceError;
      try {
        if (capture) await this.client.captureSession(p.sessionId, key);
        else await this.client.releaseSession(p.sessionId, key);
        return { outcome: "settled" };
      } catch (e) {
        error = e instanceof ServiceError ? e : new ServiceError(String(e));
      }
      if (error.status === 404 || error.status === 409) {
        // The hold ended some other way: see how.
        let session: Session;
        try {
          session = await this.client.getSession(p.sessionId);
        } catch (e) {
          const wait = e instanceof ServiceError && e.retryAfter !== undefined ? e.retryAfter : backoff;
          return { outcome: "later", wait };
        }
        if (session.captureStatus === "captured" || !capture) return { outcome: "settled" };
        if (session.captureStatus !== "held") return { outcome: "lapsed" };
        // Still held: a race, not an end. Another process sharing the store may be
        // capturing under the same key right now; its answer is soon replayed.
        if (attempt === SETTLE_ATTEMPTS) return { outcome: "later", wait: backoff };
        await sleep(backoff * 1000);
        backoff *= 2;
        continue;
      }
      if (error.status !== undefined && error.status !== 429 && error.status < 500) {
        this.log(`the service refused to ${action} payment ${p.sessionId}: ${error.message}`);
        return { outcome: "later", wait: 60 };
      }
      const wait = error.retryAfter ?? backoff;
      this.log(`${action} of payment ${p.sessionId} failed (attempt ${attempt}): ${error.message}`);
      if (attempt === SETTLE_ATTEMPTS || wait > LONGEST_INLINE_WAIT) return { outcome: "later", wait };
      await sleep(wait * 1000);
      backoff *= 2;
    }
    return { outcome: "later", wait: backoff };
  }

  /** A concurrent confirmation is running the tool: waits for its result. */
  private async waitForResult(p: PendingPayment, nextStep: string): Promise<ToolResult> {
    const deadline = Date.now() + this.config.waitForPayment * 1000;
    while (Date.now() < deadline) {
      const found = await this.store.get(p.paymentId);
      if (found?.state === "done") return found.result!;
      // The run is over: settle (after the runner's own settlement, if any).
      if (found?.state === "ran") return this.settleAndAnswer(p, found.result!, found.succeeded, nextStep);
      await sleep(50);
    }
    return answers.refusal("the paid tool is still running; confirm again in a moment to get its result");
  }

  /**
   * Runs at once a payment that a mandate of the payer paid at creation, as a
   * confirmation would; its answer says so in `_meta.payment`.
   */
  async runCovered(p: PendingPayment, session: Session, nextStep: string, run: RunTool): Promise<ToolResult> {
    const answer = await this.runPaid(p, nextStep, run, session);
    return paidUnderMandate(answer, p, session.mandateId as string);
  }

  /** The payer declined: the session is cancelled, so nothing will be paid. */
  async declined(p: PendingPayment): Promise<ToolResult> {
    try {
      await this.client.cancelSession(p.sessionId);
    } catch (e) {
      this.log(`cancelling a declined payment failed: ${String(e)}`);
    }
    return answers.refusal("the payer declined the payment; nothing was charged");
  }
}

/**
 * What a session records of the call it pays for; the service answers it on every read,
 * so a confirmation checks it whatever the payment store says.
 */
export function bindingMetadata(tool: string, hashedArguments: string): Record<string, string> {
  return { walleot_tool: tool, walleot_arguments_hash: hashedArguments };
}

/**
 * A result paid under a mandate says so in its `_meta.payment`: the payment id (kept
 * for a repeated confirmation), the amount charged and the mandate.
 */
function paidUnderMandate(answer: ToolResult, p: PendingPayment, mandateId: string): ToolResult {
  const meta = answer._meta;
  const kept = typeof meta === "object" && meta !== null && !Array.isArray(meta) ? meta : {};
  const payment = {
    paymentId: p.paymentId,
    amount: p.price.majorNumber(),
    amountMinor: p.price.minor,
    currency: p.price.currency.toUpperCase(),
    mandateId,
  };
  return { ...answer, _meta: { ...kept, payment } };
}

/** Paid at creation under a mandate of the payer. */
function covered(session: Session): boolean {
  return session.status === "paid" && typeof session.mandateId === "string" && session.mandateId !== "";
}

function sameMetadata(got: unknown, want: Record<string, string>): boolean {
  if (typeof got !== "object" || got === null) return false;
  const entries = Object.entries(got as Record<string, unknown>);
  return entries.length === Object.keys(want).length && entries.every(([k, v]) => want[k] === v);
}
