/**
 * Pending payments: what a payment was opened for, and whether its tool ran.
 *
 * A payment is bound to the tool, its price, a canonical hash of the arguments and,
 * where the server names one, the authenticated subject. Its state moves
 * awaiting -> running -> ran -> done once, so the tool runs at most once per payment.
 * `ran` holds a result whose payment is not settled yet: it is handed out only once
 * the held funds are captured. `done` keeps the result for repeated confirmations.
 *
 * `PaymentStore` is the narrow, async interface a shared store implements: each step
 * is applied atomically or reports that its precondition no longer holds (a payment
 * claimed already, a cap reached); the rules live in `payments.ts`. `MemoryStore`
 * keeps payments in this process, within a byte budget, and drops an unpaid payment a
 * day after its link expired and a kept result a day after it was made; `RedisStore`
 * (`redis.ts`) shares them between processes.
 */

import type { Price } from "./price.js";

export type PaymentState = "awaiting" | "running" | "ran" | "done";

/** A tools/call result as sent on the wire. */
export type ToolResult = Record<string, unknown>;

export interface PendingPayment {
  /** The secret handed to the MCP client (192 random bits); never in the checkout link. */
  paymentId: string;
  /** The Walleot session that collects the money. */
  sessionId: string;
  paymentUrl: string;
  tool: string;
  arguments: Record<string, unknown>;
  argumentsHash: string;
  price: Price;
  /** The authenticated subject it is bound to, where the server names one. */
  subject: string | undefined;
  /** Who opened it, for the per-caller cap: subject, MCP session or connection. */
  owner: string;
  /** When the link expires unpaid: RFC 3339 as the service gave it, and Unix seconds. */
  expiresAt: string;
  expiresUnix: number;
}

export interface PaymentRecord {
  payment: PendingPayment;
  state: PaymentState;
  result: ToolResult | undefined;
  succeeded: boolean;
}

/** Caps on unpaid payments with open links, checked atomically with a put. */
export interface OpenCaps {
  /** The most the payment's owner may have open. */
  perOwner?: number;
  /** The most everyone may have open. */
  total?: number;
}

export interface PaymentStore {
  /**
   * Keeps a new payment; rejects with `TooManyOpen` when a cap of `caps` is reached
   * and with `StoreFull` when there is no room for it, and keeps nothing then.
   */
  put(payment: PendingPayment, caps?: OpenCaps): Promise<void>;
  get(paymentId: string): Promise<PaymentRecord | undefined>;
  /** Unpaid payments whose links are still open: the owner's, and everyone's. */
  openCounts(owner: string): Promise<{ mine: number; total: number }>;
  /**
   * awaiting -> running, atomically. Answers the record as it was before: `awaiting`
   * means this caller runs the tool; undefined means the payment is unknown.
   */
  claim(paymentId: string): Promise<PaymentRecord | undefined>;
  /** running -> ran: the tool ran, its payment is not settled yet. */
  ran(paymentId: string, result: ToolResult, succeeded: boolean): Promise<void>;
  /** ran -> done: settled; the result is kept for repeated confirmations. */
  finish(paymentId: string, result: ToolResult, succeeded: boolean): Promise<void>;
}

/** The payment store failed or refused: the step it was asked for did not happen. */
export class StoreError extends Error {
  override name = "StoreError";
}

/** The store keeps no more: the payment was not kept. */
export class StoreFull extends StoreError {
  override name = "StoreFull";
  constructor() {
    super("the payment store is full");
  }
}

/** A cap on open payments was reached when the payment was to be kept: it was not. */
export class TooManyOpen extends StoreError {
  override name = "TooManyOpen";
  constructor(
    /** Whose cap: the owner's, or everyone's. */
    readonly scope: "owner" | "total",
    readonly mine: number,
    readonly total: number,
  ) {
    super(`too many open payments (${scope}): ${mine} of the owner's, ${total} in all`);
  }
}

interface Entry {
  payment: PendingPayment;
  state: PaymentState;
  result: ToolResult | undefined;
  succeeded: boolean;
  ranAt: number;
  weight: number;
}

export interface MemoryStoreOptions {
  /** Bytes of arguments and results kept at most (64 MiB by default). */
  budgetBytes?: number;
  /** How long an unpaid payment is kept after its link expired (a day by default). */
  afterExpirySeconds?: number;
  /** How long a result is kept for repeated confirmations (a day by default). */
  resultsSeconds?: number;
  /** Unix seconds now; tests move it. */
  now?: () => number;
}

function weigh(entry: Entry): number {
  let size = JSON.stringify(entry.payment.arguments).length;
  if (entry.result !== undefined) size += JSON.stringify(entry.result).length;
  return size + 512;
}

function snapshot(entry: Entry): PaymentRecord {
  return { payment: entry.payment, state: entry.state, result: entry.result, succeeded: entry.succeeded };
}

/** Payments in this process's memory. Every method runs to completion before the next. */
export class MemoryStore implements PaymentStore {
  readonly budget: number;
  readonly afterExpiry: number;
  readonly results: number;
  private readonly now: () => number;
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  constructor(options: MemoryStoreOptions = {}) {
    this.budget = options.budgetBytes ?? 64 * 1024 * 1024;
    this.afterExpiry = options.afterExpirySeconds ?? 24 * 3600;
    this.results = options.resultsSeconds ?? 24 * 3600;
    this.now = options.now ?? (() => Date.now() / 1000);
  }

  get size(): number {
    return this.entries.size;
  }

  private kept(entry: Entry, now: number): boolean {
    if (entry.state === "awaiting") return now < entry.payment.expiresUnix + this.afterExpiry;
    if (entry.state === "done") return now < entry.ranAt + this.results;
    return true; // a run in flight, or a paid result still to settle: never dropped
  }

  private remove(paymentId: string): void {
    const entry = this.entries.get(paymentId);
    if (entry !== undefined) {
      this.entries.delete(paymentId);
      this.bytes -= entry.weight;
    }
  }

  private makeRoom(now: number, budget: number): void {
    for (const [id, entry] of this.entries) {
      if (!this.kept(entry, now)) this.remove(id);
    }
    if (this.bytes <= budget) return;
    // Expired unpaid payments first, then kept results, oldest first.
    const evictable = [...this.entries]
      .filter(([, e]) => (e.state === "awaiting" && e.payment.expiresUnix <= now) || e.state === "done")
      .map(([id, e]) => ({
        id,
        rank: e.state === "awaiting" ? 0 : 1,
        at: e.state === "awaiting" ? e.payment.expiresUnix : e.ranAt,
      }))
      .sort((a, b) => a.rank - b.rank || a.at - b.at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const { id } of evictable) {
      if (this.bytes <= budget) break;
      this.remove(id);
    }
  }

  private countOpen(owner: string, now: number): { mine: number; total: number } {
    let mine = 0;
    let total = 0;
    for (const entry of this.entries.values()) {
      if (entry.state === "awaiting" && entry.payment.expiresUnix > now) {
        total += 1;
        if (entry.payment.owner === owner) mine += 1;
      }
    }
    return { mine, total };
  }

  async put(payment: PendingPayment, caps: OpenCaps = {}): Promise<void> {
    const now = this.now();
    if (caps.perOwner !== undefined || caps.total !== undefined) {
      const { mine, total } = this.countOpen(payment.owner, now);
      if (caps.perOwner !== undefined && mine >= caps.perOwner) throw new TooManyOpen("owner", mine, total);
      if (caps.total !== undefined && total >= caps.total) throw new TooManyOpen("total", mine, total);
    }
    const entry: Entry = { payment, state: "awaiting", result: undefined, succeeded: false, ranAt: now, weight: 0 };
    entry.weight = weigh(entry);
    this.makeRoom(now, Math.max(this.budget - entry.weight, 0));
    if (this.bytes + entry.weight > this.budget) throw new StoreFull();
    this.bytes += entry.weight;
    this.entries.set(payment.paymentId, entry);
  }

  async get(paymentId: string): Promise<PaymentRecord | undefined> {
    const entry = this.entries.get(paymentId);
    if (entry === undefined || !this.kept(entry, this.now())) return undefined;
    return snapshot(entry);
  }

  async openCounts(owner: string): Promise<{ mine: number; total: number }> {
    return this.countOpen(owner, this.now());
  }

  async claim(paymentId: string): Promise<PaymentRecord | undefined> {
    const entry = this.entries.get(paymentId);
    if (entry === undefined) return undefined;
    const found = snapshot(entry);
    if (entry.state === "awaiting") entry.state = "running";
    return found;
  }

  private set(paymentId: string, state: PaymentState, result: ToolResult, succeeded: boolean): void {
    const entry = this.entries.get(paymentId);
    if (entry === undefined) return;
    this.bytes -= entry.weight;
    entry.state = state;
    entry.result = result;
    entry.succeeded = succeeded;
    entry.ranAt = this.now();
    entry.weight = weigh(entry);
    this.bytes += entry.weight;
  }

  async ran(paymentId: string, result: ToolResult, succeeded: boolean): Promise<void> {
    this.set(paymentId, "ran", result, succeeded);
  }

  async finish(paymentId: string, result: ToolResult, succeeded: boolean): Promise<void> {
    this.set(paymentId, "done", result, succeeded);
  }
}
