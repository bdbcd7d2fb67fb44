/**
 * `RedisStore`: pending payments in Redis, shared by every server process that names
 * the same Redis and prefix, as several processes behind a load balancer do.
 *
 * Each step is one Lua script, so it is atomic across processes: a payment is claimed
 * by one confirmation only, and the caps on open payments hold however many processes
 * open payments at once. Keys, under the prefix:
 *
 *     pay:<payment id>   a hash: the payment (JSON), its owner, state, result, ...
 *     open               a sorted set of every unpaid payment, scored by link expiry
 *     open:<owner>       the same for one owner, so counts never scan
 *
 * Retention is by key expiry, as the memory store's: an unpaid payment goes a day
 * after its link expired, a kept result a day after it was settled; a claimed payment
 * still running or settling is kept at least as long as the longer of those two after
 * its last step (Redis outlives a process that died mid-run, so nothing may stay for
 * ever). The sets lose their expired members on each new payment and expire with
 * their last link.
 *
 * The scripts touch keys they compute from the prefix, so this is for a single Redis
 * (or a primary with replicas); on Redis Cluster use a prefix with a hash tag, such as
 * "{walleot}:", which keeps every key in one slot. The layout and the JSON are those
 * of the Python SDK's RedisStore.
 */

import { randomBytes } from "node:crypto";

import { Redis } from "ioredis";

import { Price } from "./price.js";
import {
  StoreError,
  TooManyOpen,
  type OpenCaps,
  type PaymentRecord,
  type PaymentState,
  type PaymentStore,
  type PendingPayment,
  type ToolResult,
} from "./store.js";

// Keeps `key` at least `ms` milliseconds from now (a key without expiry stays so).
const KEEP_AT_LEAST = `
local function keep_at_least(key, ms)
  local left = redis.call('PTTL', key)
  if left >= 0 and left < tonumber(ms) then redis.call('PEXPIRE', key, ms) end
end
`;

// KEYS: pay:<id>, open, open:<owner>
// ARGV: id, payment JSON, owner, expires (s), now (s), keep until (ms), max mine, max total (-1: none)
const PUT = `
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[5])
-- A retried put that had been applied: kept already.
if redis.call('EXISTS', KEYS[1]) == 1 then return {'kept', 0, 0} end
local mine = redis.call('ZCARD', KEYS[3])
local total = redis.call('ZCARD', KEYS[2])
local max_mine, max_total = tonumber(ARGV[7]), tonumber(ARGV[8])
if max_mine >= 0 and mine >= max_mine then return {'owner', mine, total} end
if max_total >= 0 and total >= max_total then return {'total', mine, total} end
redis.call('HSET', KEYS[1], 'payment', ARGV[2], 'owner', ARGV[3], 'state', 'awaiting')
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
if tonumber(ARGV[4]) > tonumber(ARGV[5]) then
  for i = 2, 3 do
    redis.call('ZADD', KEYS[i], ARGV[4], ARGV[1])
    local last = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', KEYS[i], string.format('%.0f', math.ceil(tonumber(last[2]) * 1000)))
  end
end
return {'kept', mine, total}
`;

// KEYS: open, open:<owner>; ARGV: now (s)
const OPEN_COUNTS = `
return {
  redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[1], '+inf'),
  redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf'),
}
`;

// KEYS: pay:<id>, open; ARGV: id, prefix of the owners' sets, claim token, keep (ms).
// The token makes a retried claim answer "awaiting" again to the caller that made it,
// so a lost reply cannot leave a payment running with nobody running it.
const CLAIM =
  KEEP_AT_LEAST +
  `
local found = redis.call('HMGET', KEYS[1], 'payment', 'state', 'result', 'succeeded', 'owner', 'claimer')
if not found[1] then return false end
local state = found[2]
if state == 'awaiting' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'claimer', ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', ARGV[2] .. found[5], ARGV[1])
  keep_at_least(KEYS[1], ARGV[4])
elseif state == 'running' and found[6] == ARGV[3] then
  state = 'awaiting'
end
return {found[1], state, found[3] or '', found[4] or ''}
`;

// KEYS: pay:<id>; ARGV: result JSON, succeeded (1/0), now (s), keep (ms)
const RAN =
  KEEP_AT_LEAST +
  `
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'ran', 'result', ARGV[1], 'succeeded', ARGV[2], 'ran_at', ARGV[3])
keep_at_least(KEYS[1], ARGV[4])
return 1
`;

// KEYS: pay:<id>; ARGV: result JSON, succeeded (1/0), now (s), keep (ms).
// Done once: a second settlement never replaces the result handed out first.
const FINISH = `
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' and state ~= 'ran' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'result', ARGV[1], 'succeeded', ARGV[2], 'ran_at', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`;

type Arg = string | number;
type Found = [string | null, string | null, string | null, string | null] | null;

/** The scripts, as ioredis defines them (EVALSHA, falling back to EVAL once). */
interface Scripts {
  walleotPut(...args: Arg[]): Promise<[string, number, number]>;
  walleotOpenCounts(...args: Arg[]): Promise<[number, number]>;
  walleotClaim(...args: Arg[]): Promise<Found>;
  walleotRan(...args: Arg[]): Promise<number>;
  walleotFinish(...args: Arg[]): Promise<number>;
}

/** Redis could not be reached or failed: the step did not happen (or its outcome is unknown, which every step here tolerates on a retry). */
export class StoreUnavailable extends StoreError {
  override name = "StoreUnavailable";
}

export interface RedisStoreOptions {
  /** The Redis to use: redis://[user:password@]host:port/db or rediss:// (default redis://127.0.0.1:6379). */
  url?: string;
  /** The prefix of every key (default "walleot:"); processes sharing payments share it. */
  prefix?: string;
  /** How long an unpaid payment is kept after its link expired (a day by default). */
  afterExpirySeconds?: number;
  /** How long a result is kept for repeated confirmations (a day by default). */
  resultsSeconds?: number;
  /** Seconds each connection and command may take (5). */
  timeout?: number;
}

/** The payment as the Python SDK writes it. */
export function paymentJson(p: PendingPayment): string {
  return JSON.stringify({
    paymentId: p.paymentId,
    sessionId: p.sessionId,
    paymentUrl: p.paymentUrl,
    tool: p.tool,
    arguments: p.arguments,
    argumentsHash: p.argumentsHash,
    price: { minor: p.price.minor, currency: p.price.currency },
    subject: p.subject ?? null,
    owner: p.owner,
    expiresAt: p.expiresAt,
    expiresUnix: p.expiresUnix,
  });
}

export function paymentFromJson(text: string): PendingPayment {
  const d = JSON.parse(text);
  return {
    paymentId: d.paymentId,
    sessionId: d.sessionId,
    paymentUrl: d.paymentUrl,
    tool: d.tool,
    arguments: d.arguments,
    argumentsHash: d.argumentsHash,
    price: new Price(Number(d.price.minor), d.price.currency),
    subject: d.subject ?? undefined,
    owner: d.owner,
    expiresAt: d.expiresAt,
    expiresUnix: Number(d.expiresUnix),
  };
}

/**
 * Pending payments in Redis, shared by the server processes that name the same Redis
 * and prefix:
 *
 * ```ts
 * installWalleot(server, { ..., store: new RedisStore({ url: "redis://127.0.0.1:6379", prefix: "walleot:" }) });
 * ```
 *
 * A Redis that is down or slow is answered to the caller as a clear tool error,
 * nothing charged. `close()` ends the connection.
 */
export class RedisStore implements PaymentStore {
  readonly prefix: string;
  readonly afterExpiry: number;
  readonly results: number;
  private readonly client: Redis & Scripts;

  constructor(options: RedisStoreOptions = {}) {
    this.prefix = options.prefix ?? "walleot:";
    this.afterExpiry = options.afterExpirySeconds ?? 24 * 3600;
    this.results = options.resultsSeconds ?? 24 * 3600;
    const timeout = (options.timeout ?? 5) * 1000;
    const client = new Redis(options.url ?? "redis://127.0.0.1:6379", {
      lazyConnect: true,
      connectTimeout: timeout,
      commandTimeout: timeout,
      // One reconnection per command: a dropped connection is re-made at once, while a
      // Redis that is down is reported within a fraction of a second.
      maxRetriesPerRequest: 1,
      retryStrategy: (times) => Math.min(times * 100, 500),
    });
    // Failures reach the caller through the commands; the event would only be noise.
    client.on("error", () => {});
    client.defineCommand("walleotPut", { numberOfKeys: 3, lua: PUT });
    client.defineCommand("walleotOpenCounts", { numberOfKeys: 2, lua: OPEN_COUNTS, readOnly: true });
    client.defineCommand("walleotClaim", { numberOfKeys: 2, lua: CLAIM });
    client.defineCommand("walleotRan", { numberOfKeys: 1, lua: RAN });
    client.defineCommand("walleotFinish", { numberOfKeys: 1, lua: FINISH });
    this.client = client as Redis & Scripts;
  }

  private key(paymentId: string): string {
    return `${this.prefix}pay:${paymentId}`;
  }

  private open(owner?: string): string {
    return owner === undefined ? `${this.prefix}open` : `${this.prefix}open:${owner}`;
  }

  /** Running or settling: never dropped before either retention would drop it. */
  private keepInFlightMs(): number {
    return Math.ceil(Math.max(this.results, this.afterExpiry) * 1000);
  }

  private async call<T>(step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (e) {
      throw new StoreUnavailable(`the Redis payment store failed: ${e instanceof Error ? e.message : String(e)}`, {
        cause: e,
      });
    }
  }

  async put(payment: PendingPayment, caps: OpenCaps = {}): Promise<void> {
    const now = Date.now() / 1000;
    const [outcome, mine, total] = await this.call(() =>
      this.client.walleotPut(
        this.key(payment.paymentId),
        this.open(),
        this.open(payment.owner),
        payment.paymentId,
        paymentJson(payment),
        payment.owner,
        String(payment.expiresUnix),
        String(now),
        Math.ceil((payment.expiresUnix + this.afterExpiry) * 1000),
        caps.perOwner ?? -1,
        caps.total ?? -1,
      ),
    );
    if (outcome === "owner" || outcome === "total") throw new TooManyOpen(outcome, Number(mine), Number(total));
  }

  async get(paymentId: string): Promise<PaymentRecord | undefined> {
    const found = await this.call(() => this.client.hmget(this.key(paymentId), "payment", "state", "result", "succeeded"));
    return record(found as Found);
  }

  async openCounts(owner: string): Promise<{ mine: number; total: number }> {
    const now = Date.now() / 1000;
    const [mine, total] = await this.call(() => this.client.walleotOpenCounts(this.open(), this.open(owner), String(now)));
    return { mine: Number(mine), total: Number(total) };
  }

  async claim(paymentId: string): Promise<PaymentRecord | undefined> {
    const token = randomBytes(16).toString("hex");
    const found = await this.call(() =>
      this.client.walleotClaim(this.key(paymentId), this.open(), paymentId, this.open(""), token, this.keepInFlightMs()),
    );
    return record(found);
  }

  async ran(paymentId: string, result: ToolResult, succeeded: boolean): Promise<void> {
    const now = Date.now() / 1000;
    await this.call(() =>
      this.client.walleotRan(this.key(paymentId), JSON.stringify(result), succeeded ? 1 : 0, String(now), this.keepInFlightMs()),
    );
  }

  async finish(paymentId: string, result: ToolResult, succeeded: boolean): Promise<void> {
    const now = Date.now() / 1000;
    await this.call(() =>
      this.client.walleotFinish(
        this.key(paymentId),
        JSON.stringify(result),
        succeeded ? 1 : 0,
        String(now),
        Math.max(Math.ceil(this.results * 1000), 1),
      ),
    );
  }

  /** Ends the connection to Redis. */
  async close(): Promise<void> {
    if (this.client.status === "ready") await this.client.quit().catch(() => this.client.disconnect());
    else this.client.disconnect();
  }
}

function record(found: Found): PaymentRecord | undefined {
  if (found === null || !found[0]) return undefined;
  const [payment, state, result, succeeded] = found;
  return {
    payment: paymentFromJson(payment),
    state: state as PaymentState,
    result: result ? (JSON.parse(result) as ToolResult) : undefined,
    succeeded: succeeded === "1",
  };
}
