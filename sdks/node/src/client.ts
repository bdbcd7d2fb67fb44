/**
 * A small client of the Walleot service's `/v1` API.
 *
 * Every call has a timeout. POSTs carry an `Idempotency-Key`, so network failures and
 * 5xx answers are retried with backoff without doing anything twice. A 429 is not
 * retried here: its `Retry-After` travels in the error for the caller to report.
 */

import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

/** The longest wait the service accepts on a session read. */
export const MAX_WAIT_SECONDS = 60;

/**
 * A call to the service that did not succeed. `status` is undefined when the service
 * could not be reached; the message may name the service's address, so it goes to
 * logs, never to MCP clients.
 */
export class ServiceError extends Error {
  override name = "ServiceError";
  constructor(
    message: string,
    readonly status?: number,
    readonly kind?: string,
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

/** A session as the service answers it; only the fields the SDK reads are named. */
export interface Session {
  sessionId: string;
  url: string;
  status: string;
  amount: number;
  currency: string;
  expiresAt?: string;
  captureStatus?: string | null;
  /** The merchant's labels; this SDK records the paid tool and the hash of its arguments. */
  metadata?: Record<string, string>;
  /** The merchant's reference for the payer's user or agent, which mandates are granted for. */
  customer?: string | null;
  /** The payer's mandate that paid the session at creation, if one did. */
  mandateId?: string | null;
  [field: string]: unknown;
}

export interface ServiceClientOptions {
  /** Seconds a call may take, including its connection (10 by default). */
  timeout?: number;
  maxRetries?: number;
  /** Seconds before the first retry; each further one waits twice as long. */
  initialBackoff?: number;
}

function retryAfter(value: string | null): number | undefined {
  if (value === null || !/^\s*\d+\s*$/.test(value)) return undefined;
  return Math.max(Number(value.trim()), 0);
}

const RETRYABLE = new Set([500, 502, 503, 504]);

export class ServiceClient {
  readonly base: string;
  readonly timeout: number;
  readonly maxRetries: number;
  readonly initialBackoff: number;

  constructor(
    baseUrl: string,
    private readonly key: string,
    options: ServiceClientOptions = {},
  ) {
    let base = baseUrl.trim().replace(/\/+$/, "");
    if (base.endsWith("/v1")) base = base.slice(0, -"/v1".length);
    if (!/^https?:\/\//.test(base)) {
      throw new TypeError("the Walleot base URL must start with http:// or https://");
    }
    this.base = `${base}/v1/`;
    this.timeout = options.timeout ?? 10;
    this.maxRetries = options.maxRetries ?? 2;
    this.initialBackoff = options.initialBackoff ?? 0.2;
  }

  private async call(
    method: "GET" | "POST",
    path: string,
    options: { body?: unknown; idempotencyKey?: string; timeout?: number } = {},
  ): Promise<Session> {
    const headers: Record<string, string> = {
      Authorization: `Bearer ${this.key}`,
      Accept: "application/json",
    };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    if (options.idempotencyKey !== undefined) headers["Idempotency-Key"] = options.idempotencyKey;
    const seconds = options.timeout ?? this.timeout;
    const repeatable = method === "GET" || options.idempotencyKey !== undefined;
    for (let attempt = 0; ; attempt++) {
      let error: ServiceError;
      try {
        const answer = await fetch(this.base + path, {
          method,
          headers,
          body: options.body === undefined ? undefined : JSON.stringify(options.body),
          redirect: "manual",
          signal: AbortSignal.timeout(seconds * 1000),
        });
        if (answer.status < 300) {
          try {
            return (await answer.json()) as Session;
          } catch {
            error = new ServiceError("the service answered something other than JSON", answer.status);
          }
        } else {
          error = await apiError(answer);
        }
      } catch (e) {
        // Unreachable, reset or timed out (also while reading the body).
        error = new ServiceError(`${method} ${this.base}${path}: ${String(e)}`);
      }
      const retryable = error.status === undefined || RETRYABLE.has(error.status);
      if (repeatable && retryable && attempt < this.maxRetries) {
        await sleep(this.initialBackoff * 2 ** attempt * 1000);
        continue;
      }
      throw error;
    }
  }

  /**
   * A manual-capture session: the payer's funds are held until captured or released.
   * A mandate the payer granted for `customer` may pay it at creation.
   */
  createSession(
    amount: number,
    currency: string,
    description: string | undefined,
    expiresIn: number,
    idempotencyKey: string = randomUUID(),
    metadata?: Record<string, string>,
    customer?: string,
  ): Promise<Session> {
    const body: Record<string, unknown> = {
      amount,
      currency: currency.toLowerCase(),
      expiresIn,
      captureMethod: "manual",
    };
    if (description) body.description = description;
    if (metadata) body.metadata = metadata;
    if (customer !== undefined) body.customer = customer;
    return this.call("POST", "sessions", { body, idempotencyKey });
  }

  getSession(sessionId: string): Promise<Session> {
    return this.call("GET", `sessions/${encodeURIComponent(sessionId)}`);
  }

  /** A long poll: answers as soon as the session leaves `pending`, else after `wait` seconds (at most 60). */
  waitSession(sessionId: string, wait: number): Promise<Session> {
    const seconds = Math.max(0, Math.min(Math.trunc(wait), MAX_WAIT_SECONDS));
    return this.call("GET", `sessions/${encodeURIComponent(sessionId)}?wait=${seconds}`, {
      timeout: this.timeout + seconds,
    });
  }

  private post(sessionId: string, action: string, idempotencyKey: string): Promise<Session> {
    return this.call("POST", `sessions/${encodeURIComponent(sessionId)}/${action}`, { idempotencyKey });
  }

  captureSession(sessionId: string, idempotencyKey: string = randomUUID()): Promise<Session> {
    return this.post(sessionId, "capture", idempotencyKey);
  }

  releaseSession(sessionId: string, idempotencyKey: string = randomUUID()): Promise<Session> {
    return this.post(sessionId, "release", idempotencyKey);
  }

  cancelSession(sessionId: string, idempotencyKey: string = randomUUID()): Promise<Session> {
    return this.post(sessionId, "cancel", idempotencyKey);
  }
}

async function apiError(answer: Response): Promise<ServiceError> {
  let kind: string | undefined;
  let message = `HTTP ${answer.status}`;
  try {
    const detail = ((await answer.json()) as { error?: { type?: string; message?: string } }).error ?? {};
    kind = detail.type;
    message = detail.message || message;
  } catch {
    // not JSON: the status says enough
  }
  return new ServiceError(message, answer.status, kind, retryAfter(answer.headers.get("retry-after")));
}
