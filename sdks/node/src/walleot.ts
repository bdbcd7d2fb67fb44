/**
 * `installWalleot`: prices on the tools of an McpServer, paid through Walleot.
 *
 * Installing takes over the server's tools/list and tools/call handlers and keeps
 * McpServer's own behind them. tools/list gains each price in the tool's `_meta`, and
 * the confirm tools or `payment_id` arguments the mode needs; a tools/call of a priced
 * tool (or of its confirm tool) goes through the payment flows, which run the tool
 * through McpServer's own handler once paid, so it behaves exactly as without a price;
 * everything else passes through unchanged.
 *
 * One McpServer serves one connection, so a server that makes one per HTTP session
 * installs the same `Walleot` on each (`walleot.install(server)`): payments, caps and
 * settlements are then shared by all of them.
 */

import { randomUUID } from "node:crypto";

import { McpServer, type RegisteredTool } from "@modelcontextprotocol/sdk/server/mcp.js";
import { getParseErrorMessage, normalizeObjectSchema, safeParseAsync } from "@modelcontextprotocol/sdk/server/zod-compat.js";
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import {
  CallToolRequestSchema,
  ElicitResultSchema,
  ListToolsRequestSchema,
  type ServerNotification,
  type ServerRequest,
} from "@modelcontextprotocol/sdk/types.js";

import * as answers from "./answers.js";
import { ServiceClient } from "./client.js";
import { OpenConfirms } from "./confirms.js";
import { customerOfSubject, isValidCustomer, stdioCustomer } from "./customer.js";
import { Mode, parseMode } from "./mode.js";
import { credentialOwner, Payments, type Caller, type RunTool } from "./payments.js";
import type { Price } from "./price.js";
import { acceptPrices, priceOfTool } from "./registration.js";
import { MemoryStore, type PaymentStore, type PendingPayment, type ToolResult } from "./store.js";

/** The service's address when neither `baseUrl` nor `WALLEOT_API_URL` is given. */
export const DEFAULT_API_URL = "http://127.0.0.1:8080";
export const DEFAULT_PAYMENT_TTL = 30 * 60;
export const DEFAULT_MAX_OPEN_PER_CALLER = 10;
export const DEFAULT_MAX_OPEN = 1_000;

/** What a request handler is given besides the request. */
export type RequestExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

export interface WalleotOptions {
  /** A secret key of the Walleot service (default: `WALLEOT_API_KEY`). */
  apiKey?: string;
  /** How payments happen (default `Mode.TWO_STEP`); "two-step" and "TWO_STEP" also work. */
  mode?: Mode | string;
  /** The service's address, with or without `/v1` (default: `WALLEOT_API_URL`, else http://127.0.0.1:8080). */
  baseUrl?: string;
  /**
   * The authenticated subject of a request (from `extra.authInfo`, say): payments are
   * then bound to it. Never read it from anything the client chooses, such as `_meta`.
   */
  identify?: (extra: RequestExtra) => string | undefined;
  /**
   * The customer reference that payments over stdio (or in process) name, which the
   * payer may grant a mandate for: 1 to 255 printable ASCII characters (default:
   * `WALLEOT_CUSTOMER`, else this installation's own, kept in
   * `$WALLEOT_STATE_DIR/customer`).
   */
  customer?: string;
  /** Seconds a payment link stays payable (30 min by default; 60 s to 7 days). */
  paymentTtl?: number;
  /** Unpaid payments one caller may have open at once (10). */
  maxOpenPerCaller?: number;
  /** Unpaid payments open at once in all (1000). */
  maxOpen?: number;
  /** Seconds between progress reports while a call waits for the payer (20). */
  pollEvery?: number;
  /** Seconds a call waits for the payer in PROGRESS and ELICITATION (300). */
  waitForPayment?: number;
  /** Seconds each call to the service may take (10). */
  timeout?: number;
  /**
   * Where pending payments are kept (default: a `MemoryStore` of this process); a
   * `RedisStore` shares them between the processes of one server.
   */
  store?: PaymentStore;
  /** Where warnings go (default: standard error). */
  log?: (message: string) => void;
}

/** The companion tool that confirms a payment for `tool`. */
export function confirmToolName(tool: string): string {
  return `confirm_${tool}_payment`;
}

type Handler = (request: Record<string, unknown>, extra: RequestExtra) => Promise<Record<string, unknown>>;

/** The parts of McpServer walleot works with, beyond its public API. */
interface ServerInternals {
  _registeredTools: Record<string, RegisteredTool>;
  _toolHandlersInitialized?: boolean;
  setToolRequestHandlers(): void;
  isConnected(): boolean;
  registerTool: unknown;
  server: McpServer["server"];
}

const INSTALLED = Symbol.for("walleot.installed");

/** One tools/call on one server. */
interface Call {
  server: ServerInternals;
  params: { name: string; arguments?: Record<string, unknown>; _meta?: Record<string, unknown> };
  extra: RequestExtra;
  run: RunTool;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function defaultLog(message: string): void {
  process.stderr.write(`walleot: ${message}\n`);
}

/** Charges per call for the priced tools of the McpServers it is installed on. */
export class Walleot {
  readonly mode: Mode;
  readonly client: ServiceClient;
  readonly store: PaymentStore;
  readonly payments: Payments;
  /** The customer reference of a stdio or in-process caller without a subject, if one can be kept. */
  readonly customer: string | undefined;
  private readonly options: Required<Pick<WalleotOptions, "pollEvery" | "waitForPayment">> & WalleotOptions;
  private readonly log: (message: string) => void;
  // DYNAMIC_TOOLS: the open payments of each caller, by tool.
  private readonly open = new OpenConfirms();
  // A stdio or in-process connection has no id of its own: one per transport.
  private readonly connections = new WeakMap<object, string>();
  private readonly processId = newId();

  constructor(options: WalleotOptions = {}) {
    this.mode = parseMode(options.mode ?? Mode.TWO_STEP);
    const key = options.apiKey || process.env.WALLEOT_API_KEY;
    if (!key) throw new Error("no Walleot API key: pass apiKey or set WALLEOT_API_KEY");
    const url = options.baseUrl || process.env.WALLEOT_API_URL || DEFAULT_API_URL;
    const ttl = options.paymentTtl ?? DEFAULT_PAYMENT_TTL;
    if (!(ttl >= 60 && ttl <= 7 * 24 * 3600)) throw new RangeError("paymentTtl must be between 60 seconds and 7 days");
    this.log = options.log ?? defaultLog;
    this.options = { ...options, pollEvery: options.pollEvery ?? 20, waitForPayment: options.waitForPayment ?? 300 };
    this.client = new ServiceClient(url, key, { timeout: options.timeout ?? 10 });
    this.store = options.store ?? new MemoryStore();
    if (options.customer !== undefined && !isValidCustomer(options.customer)) {
      this.log("the customer option is not 1 to 255 printable ASCII characters; ignored");
    }
    this.customer = stdioCustomer(options.customer);
    this.payments = new Payments({
      client: this.client,
      store: this.store,
      paymentTtl: Math.trunc(ttl),
      maxOpenPerCaller: options.maxOpenPerCaller ?? DEFAULT_MAX_OPEN_PER_CALLER,
      maxOpen: options.maxOpen ?? DEFAULT_MAX_OPEN,
      waitForPayment: this.options.waitForPayment,
      log: this.log,
    });
  }

  /**
   * Prices the tools of `server`, an McpServer, registered before or after. Call it
   * before `server.connect(...)`.
   */
  install(server: McpServer): this {
    const internals = server as unknown as ServerInternals;
    const protocol = internals?.server;
    if (
      !(server instanceof McpServer) &&
      (typeof internals?.registerTool !== "function" || !isObject(internals._registeredTools) || protocol === undefined)
    ) {
      throw new TypeError(
        "installWalleot(server, ...) takes the MCP SDK's McpServer " +
          '(import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"); the low-level Server has no registerTool',
      );
    }
    if ((server as unknown as Record<symbol, unknown>)[INSTALLED]) {
      throw new Error("walleot is already installed on this server");
    }
    if (!internals._toolHandlersInitialized) {
      if (internals.isConnected()) throw new Error("call installWalleot(server, ...) before server.connect(...)");
      internals.setToolRequestHandlers();
    }
    const handlers = (protocol as unknown as { _requestHandlers?: Map<string, Handler> })._requestHandlers;
    const list = handlers?.get("tools/list");
    const call = handlers?.get("tools/call");
    if (list === undefined || call === undefined) {
      throw new Error("this version of @modelcontextprotocol/sdk keeps its tool handlers where walleot cannot find them");
    }
    acceptPrices(internals);
    protocol.setRequestHandler(ListToolsRequestSchema, (request, extra) =>
      this.listTools(internals, list, request as unknown as Record<string, unknown>, extra),
    );
    protocol.setRequestHandler(CallToolRequestSchema, (request, extra) =>
      this.callTool(internals, call, request as unknown as Record<string, unknown>, extra),
    );
    Object.defineProperty(server, INSTALLED, { value: true });
    return this;
  }

  // Prices and tools, read at request time.

  private tool(server: ServerInternals, name: unknown): RegisteredTool | undefined {
    if (typeof name !== "string" || !Object.hasOwn(server._registeredTools, name)) return undefined;
    const tool = server._registeredTools[name];
    return tool.enabled ? tool : undefined;
  }

  /** The price of the tool named `name` on `server`, if it has one. */
  priceOf(server: McpServer, name: string): Price | undefined {
    return priceOfTool(this.tool(server as unknown as ServerInternals, name));
  }

  /** The priced tool a confirm tool name stands for. */
  private confirmedTool(server: ServerInternals, name: unknown): string | undefined {
    if (this.mode === Mode.RESUBMIT || typeof name !== "string") return undefined;
    const found = /^confirm_(.+)_payment$/s.exec(name);
    if (found === null) return undefined;
    return priceOfTool(this.tool(server, found[1])) !== undefined ? found[1] : undefined;
  }

  /**
   * The next step of a payment a mandate paid, should its result wait on the capture:
   * the confirm tool, accepted though DYNAMIC_TOOLS did not list it.
   */
  private coveredStep(tool: string): string {
    if (this.mode === Mode.RESUBMIT) return this.nextStep(tool);
    return `call \`${confirmToolName(tool)}\` with this payment_id`;
  }

  private nextStep(tool: string): string {
    if (this.mode === Mode.RESUBMIT) return `call \`${tool}\` again with the same arguments and this payment_id`;
    if (this.mode === Mode.DYNAMIC_TOOLS) {
      return `call \`${confirmToolName(tool)}\` (now in the tool list) with this payment_id`;
    }
    return `call \`${confirmToolName(tool)}\` with this payment_id`;
  }

  /** The client's declared elicitation capability, if any. */
  private elicitation(server: ServerInternals): Record<string, unknown> | undefined {
    const declared = server.server.getClientCapabilities()?.elicitation;
    return isObject(declared) ? declared : undefined;
  }

  /** How this call gets paid: ELICITATION (chosen, or picked by AUTO) only where the client declares it, else two steps. */
  private flow(server: ServerInternals): Mode {
    if (this.mode === Mode.ELICITATION || this.mode === Mode.AUTO) {
      return this.elicitation(server) === undefined ? Mode.TWO_STEP : Mode.ELICITATION;
    }
    return this.mode;
  }

  // Who is calling. Never anything the client can choose in `_meta`.

  private caller(server: ServerInternals, extra: RequestExtra): Caller {
    const subject = this.options.identify?.(extra) || undefined;
    if (subject !== undefined) return { subject, owner: `subject:${subject}`, customer: customerOfSubject(subject) };
    if (extra.requestInfo !== undefined) {
      // HTTP: the MCP session, where there is one; else (stateless) the credential the
      // client presents. Without a subject nobody is named: a session or a credential
      // is no customer of the merchant's.
      const headers = extra.requestInfo.headers ?? {};
      const header = headers["mcp-session-id"];
      const session = extra.sessionId ?? (typeof header === "string" ? header : undefined);
      if (session) return { subject: undefined, owner: `mcp-session:${session}`, customer: undefined };
      const credential = headers["authorization"];
      const owner = typeof credential === "string" && credential ? credentialOwner(credential) : undefined;
      return { subject: undefined, owner, customer: undefined };
    }
    // stdio or in-process: the server's one connection, and the installation's one user.
    const customer = this.customer;
    const transport = server.server.transport;
    if (transport === undefined) return { subject: undefined, owner: `connection:${this.processId}`, customer };
    let id = this.connections.get(transport);
    if (id === undefined) this.connections.set(transport, (id = `connection:${newId()}`));
    return { subject: undefined, owner: id, customer };
  }

  // tools/list

  /**
   * Whether the confirm tool of `tool` is listed for `owner`: always, except in
   * RESUBMIT (never) and DYNAMIC_TOOLS (while a payment of the caller's is open; an
   * anonymous stateless caller, who cannot be told apart, always sees it).
   */
  private listsConfirm(tool: string, owner: string | undefined): boolean {
    if (this.mode === Mode.RESUBMIT) return false;
    if (this.mode === Mode.DYNAMIC_TOOLS && owner !== undefined) return this.open.isOpen(owner, tool, Date.now() / 1000);
    return true;
  }

  private async listTools(
    server: ServerInternals,
    original: Handler,
    request: Record<string, unknown>,
    extra: RequestExtra,
  ): Promise<Record<string, unknown>> {
    const listed = await original(request, extra);
    const owner = this.mode === Mode.DYNAMIC_TOOLS ? this.caller(server, extra).owner : undefined;
    const tools = (Array.isArray(listed.tools) ? listed.tools : []).map((t: Record<string, unknown>) => ({ ...t }));
    const confirms: Record<string, unknown>[] = [];
    for (const tool of tools) {
      const name = tool.name as string;
      const price = priceOfTool(this.tool(server, name));
      if (price === undefined) continue;
      tool._meta = { ...(isObject(tool._meta) ? tool._meta : {}), price: price.meta() };
      // Payment answers carry structuredContent of their own, which the official
      // TypeScript client would check against the tool's output schema, error or not.
      delete tool.outputSchema;
      if (this.mode === Mode.RESUBMIT) {
        const schema: Record<string, unknown> = isObject(tool.inputSchema) ? { ...tool.inputSchema } : { type: "object" };
        schema.properties = {
          ...(isObject(schema.properties) ? schema.properties : {}),
          payment_id: { type: "string", description: "The paymentId from the first call, once paid." },
        };
        tool.inputSchema = schema;
      } else if (this.listsConfirm(name, owner)) {
        confirms.push(confirmTool(name, price));
      }
    }
    return { ...listed, tools: [...tools, ...confirms] };
  }

  // tools/call

  private async callTool(
    server: ServerInternals,
    original: Handler,
    request: Record<string, unknown>,
    extra: RequestExtra,
  ): Promise<Record<string, unknown>> {
    const params = request.params as Call["params"];
    const run: RunTool = (tool, args) =>
      original({ ...request, params: { ...params, name: tool, arguments: args } }, extra);
    const call: Call = { server, params, extra, run };
    const confirmed = this.confirmedTool(server, params.name);
    const price = priceOfTool(this.tool(server, params.name));
    if (confirmed === undefined && price === undefined) return original(request, extra);
    try {
      if (confirmed !== undefined) return await this.confirm(confirmed, call);
      return await this.pricedCall(params.name, price!, call);
    } catch (e) {
      // The tool's own errors are answered inside; what is left is the store failing.
      return answers.storeFailure(e, this.log);
    }
  }

  /** Checks the arguments as the tool itself will, before any money is asked for. */
  private async invalid(server: ServerInternals, name: string, args: Record<string, unknown>): Promise<ToolResult | undefined> {
    const schema = this.tool(server, name)?.inputSchema;
    if (schema === undefined) return undefined;
    try {
      const parsed = await safeParseAsync(normalizeObjectSchema(schema) ?? schema, args);
      if (parsed.success) return undefined;
      return answers.invalidArguments(name, getParseErrorMessage(parsed.error));
    } catch (e) {
      return answers.invalidArguments(name, e instanceof Error ? e.message : String(e));
    }
  }

  private async pricedCall(tool: string, price: Price, call: Call): Promise<ToolResult> {
    const caller = this.caller(call.server, call.extra);
    const args = isObject(call.params.arguments) ? { ...call.params.arguments } : {};
    let paymentId: unknown;
    if (this.mode === Mode.RESUBMIT) {
      paymentId = args.payment_id ?? undefined; // null is absent
      delete args.payment_id;
    }
    if (paymentId !== undefined) {
      const found = await this.payments.findForCall(paymentId, tool, caller, args);
      if ("answer" in found) return found.answer;
      return this.payments.runPaid(found.payment, this.nextStep(tool), call.run);
    }
    const invalid = await this.invalid(call.server, tool, args);
    if (invalid !== undefined) return invalid;
    const flow = this.flow(call.server);
    const started = await this.payments.start(tool, args, price, caller);
    if ("answer" in started) return started.answer;
    const pending = started.payment;
    if (started.covered !== undefined) {
      // Paid at creation under the payer's mandate: it runs now, in this call.
      return this.payments.runCovered(pending, started.covered, this.coveredStep(tool), call.run);
    }
    const nextStep = this.nextStep(tool);
    if (flow === Mode.PROGRESS) return this.progressCall(pending, nextStep, call);
    if (flow === Mode.ELICITATION) return this.elicitationCall(pending, nextStep, call);
    if (flow === Mode.DYNAMIC_TOOLS && caller.owner !== undefined) {
      if (this.open.add(caller.owner, tool, pending.paymentId, pending.expiresUnix, Date.now() / 1000)) {
        await this.announceToolListChange(call.extra);
      }
    }
    return answers.paymentRequired(pending, price, nextStep);
  }

  /** `confirm_<tool>_payment(payment_id)`: runs the paid call once. */
  private async confirm(tool: string, call: Call): Promise<ToolResult> {
    const args = isObject(call.params.arguments) ? call.params.arguments : {};
    const found = await this.payments.find(args.payment_id, tool, this.caller(call.server, call.extra));
    if ("answer" in found) return found.answer;
    const pending = found.payment;
    const answer = await this.payments.runPaid(pending, `call \`${confirmToolName(tool)}\` with this payment_id`, call.run);
    if (this.mode === Mode.DYNAMIC_TOOLS && pending.owner) {
      // The confirm tool goes once its result is handed out or the payment ended
      // unpaid; a confirmation is still accepted after that.
      // The answer stands if the store fails here; the tool list is advisory.
      const delivered = (await this.store.get(pending.paymentId).catch(() => undefined))?.state === "done";
      const structured = answer.structuredContent;
      const ended = isObject(structured) && structured.status === "refused";
      if ((delivered || ended) && this.open.close(pending.owner, tool, pending.paymentId, Date.now() / 1000)) {
        await this.announceToolListChange(call.extra);
      }
    }
    return answer;
  }

  /** Tells the caller its tool list changed; advisory, the list itself is always right. */
  private async announceToolListChange(extra: RequestExtra): Promise<void> {
    try {
      await extra.sendNotification({ method: "notifications/tools/list_changed" });
    } catch (e) {
      this.log(`announcing a tool list change failed: ${String(e)}`);
    }
  }

  // PROGRESS: the link streams in progress notifications while the call waits.

  private async progressCall(pending: PendingPayment, nextStep: string, call: Call): Promise<ToolResult> {
    if (call.extra._meta?.progressToken === undefined) return answers.paymentRequired(pending, pending.price, nextStep);
    const message = `Payment of ${pending.price.display()} required: open ${pending.paymentUrl}`;
    const waited = await this.awaitPayment(pending, nextStep, call.extra, this.options.waitForPayment, message);
    if (waited !== undefined) return waited;
    return this.payments.runPaid(pending, nextStep, call.run);
  }

  /**
   * Waits until the payer has paid, within `wait` seconds, with long polls of the
   * service (a payment is seen as soon as it is made), reporting progress before each
   * poll so that clients do not time out. Undefined once paid; else the answer to give.
   */
  private async awaitPayment(
    pending: PendingPayment,
    nextStep: string,
    extra: RequestExtra,
    wait: number,
    message: string,
  ): Promise<ToolResult | undefined> {
    const deadline = Date.now() + wait * 1000;
    const token = extra._meta?.progressToken;
    const stillPending = () => answers.paymentRequired(pending, pending.price, nextStep, "pending");
    for (let step = 1; ; step++) {
      if (extra.signal.aborted) return stillPending();
      if (token !== undefined) {
        try {
          await extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken: token, progress: step, message },
          });
        } catch {
          return stillPending(); // the client no longer takes progress: it has gone
        }
      }
      const left = (deadline - Date.now()) / 1000;
      const poll = Math.min(left, Math.max(this.options.pollEvery, 1));
      let status: string | undefined;
      try {
        const session =
          poll < 1
            ? await this.client.getSession(pending.sessionId)
            : await this.client.waitSession(pending.sessionId, poll);
        status = session.status;
      } catch (e) {
        if (Date.now() >= deadline) return this.payments.failure(e);
        const retry = (e as { retryAfter?: number }).retryAfter;
        await sleepSeconds(Math.min(retry ?? 1, Math.max((deadline - Date.now()) / 1000, 0)));
      }
      if (status === "paid") return undefined;
      if (status !== undefined && status !== "pending") {
        return answers.refusal(`the payment is ${status}; nothing was charged`);
      }
      if (Date.now() >= deadline) return stillPending();
    }
  }

  // ELICITATION and AUTO: the client is asked to show the link.

  /**
   * What the client is asked to show: the payment link (URL elicitation where it
   * declares that mode), else a form whose `paid` box the payer ticks once done.
   */
  private elicitationRequest(pending: PendingPayment, urlMode: boolean): Record<string, unknown> {
    const message = `\`${pending.tool}\` costs ${pending.price.display()}. Pay at ${pending.paymentUrl}`;
    if (urlMode) {
      return { mode: "url", message, url: pending.paymentUrl, elicitationId: pending.paymentId };
    }
    return {
      mode: "form",
      message: `${message}, then confirm here.`,
      requestedSchema: {
        type: "object",
        properties: { paid: { type: "boolean", title: "I have paid" } },
        required: ["paid"],
      },
    };
  }

  /**
   * Asks the client to show the link, waits for the payer, and runs the tool in the
   * same call. A dismissed request, a timeout or a payment still open gets the
   * two-step answer; the link stays payable.
   */
  private async elicitationCall(pending: PendingPayment, nextStep: string, call: Call): Promise<ToolResult> {
    const fallback = answers.paymentRequired(pending, pending.price, nextStep);
    const urlMode = this.elicitation(call.server)?.url !== undefined;
    const params = this.elicitationRequest(pending, urlMode);
    let answer: { action: string; content?: Record<string, unknown> };
    try {
      answer = await call.extra.sendRequest(
        { method: "elicitation/create", params } as ServerRequest,
        ElicitResultSchema,
        { timeout: this.options.waitForPayment * 1000 },
      );
    } catch (e) {
      // No answer in time, or the client refused the request.
      this.log(`elicitation for payment ${pending.sessionId} got no answer: ${String(e)}`);
      return fallback;
    }
    if (answer.action === "decline") return this.payments.declined(pending);
    if (answer.action !== "accept") return fallback; // dismissed: the link stays payable
    const wait = answer.content?.paid === false ? 0 : this.options.waitForPayment;
    const message = `Waiting for the payment of ${pending.price.display()} at ${pending.paymentUrl}`;
    const waited = await this.awaitPayment(pending, nextStep, call.extra, wait, message);
    if (waited !== undefined) return waited;
    if (urlMode) {
      await call.extra
        .sendNotification({
          method: "notifications/elicitation/complete",
          params: { elicitationId: pending.paymentId },
        } as ServerNotification)
        .catch(() => {});
    }
    return this.payments.runPaid(pending, nextStep, call.run);
  }
}

function confirmTool(tool: string, price: Price): Record<string, unknown> {
  return {
    name: confirmToolName(tool),
    description: `Confirm the payment of ${price.display()} for \`${tool}\` and run it with the arguments it was called with.`,
    inputSchema: {
      type: "object",
      properties: { payment_id: { type: "string", description: "The paymentId answered by the paid tool." } },
      required: ["payment_id"],
    },
  };
}

function newId(): string {
  return randomUUID().replaceAll("-", "");
}

function sleepSeconds(seconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}

/**
 * Charges per call for the priced tools of `server`, an McpServer:
 *
 * ```ts
 * installWalleot(server, { apiKey: process.env.WALLEOT_API_KEY!, mode: Mode.TWO_STEP });
 * server.registerTool("premium_analysis", { ..., price: { amount: 0.50, currency: "USD" } }, handler);
 * ```
 *
 * Returns the `Walleot`, which `install`s on further servers sharing its payments.
 */
export function installWalleot(server: McpServer, options: WalleotOptions = {}): Walleot {
  return new Walleot(options).install(server);
}
