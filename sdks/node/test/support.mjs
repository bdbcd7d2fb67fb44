// What the end-to-end tests need: a real Walleot service named by the environment,
// servers with priced tools of every shape, and the official MCP client to drive them.
//
//   WALLEOT_API_URL, WALLEOT_API_KEY      a service and its test key (required by the
//                                         end-to-end tests, skipped without); the suite
//                                         makes a few hundred POSTs a minute, so run the
//                                         service with --rate-limit-sessions 100000
//   WALLEOT_LIMITED_API_URL, WALLEOT_LIMITED_API_KEY, WALLEOT_LIMITED_CLOCK_URL
//                                         a service allowing few POSTs a minute, and an
//                                         address whose POST moves its clock on 61 s
//                                         (the rate-limit tests)
//   WALLEOT_REDIS_URL                     a Redis the RedisStore tests may write to
//                                         (redis://127.0.0.1:6379); each test keeps to a
//                                         prefix of its own and deletes its keys afterwards
//   WALLEOT_STATE_DIR                     where the installation's customer reference is
//                                         kept (default here: walleot-node-tests under
//                                         the temporary directory, so that a run leaves
//                                         the user's own installation alone)

import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { ElicitRequestSchema, ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { Redis } from "ioredis";
import { z } from "zod";

import { Price, Walleot, argumentsHash } from "walleot";
import { serveHttp } from "../examples/paid_server.mjs";

export class Service {
  constructor(url, key) {
    this.url = url.replace(/\/+$/, "");
    this.key = key;
  }

  async request(method, path, body) {
    const answer = await fetch(`${this.url}/v1/${path}`, {
      method,
      headers: { Authorization: `Bearer ${this.key}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await answer.text();
    return { status: answer.status, body: text ? JSON.parse(text) : {} };
  }

  /** Pays a session as a payer would, through the service's test helper. */
  async pay(sessionId) {
    const { status, body } = await this.request("POST", `test_helpers/sessions/${sessionId}/pay`);
    if (status !== 200) throw new Error(`paying ${sessionId} failed: ${status} ${JSON.stringify(body)}`);
  }

  async session(sessionId) {
    const { status, body } = await this.request("GET", `sessions/${sessionId}`);
    if (status !== 200) throw new Error(`reading ${sessionId} failed: ${status} ${JSON.stringify(body)}`);
    return body;
  }

  async newestSession() {
    const { status, body } = await this.request("GET", "sessions?limit=1");
    if (status !== 200) throw new Error(`listing sessions failed: ${status}`);
    return body.data[0]?.sessionId;
  }

  /** Spends the rest of the key's POST budget, until the service answers 429. */
  async exhaustPosts() {
    for (let i = 0; i < 300; i++) {
      const { status } = await this.request("POST", "sessions", { amount: 100, currency: "usd" });
      if (status === 429) return;
    }
    throw new Error("the service never rate limited");
  }
}

export class LimitedService extends Service {
  constructor(url, key, clock) {
    super(url, key);
    this.clock = clock;
  }

  /** Moves the service's clock on 61 s: its rate-limit window starts again. */
  async nextWindow() {
    const answer = await fetch(this.clock, { method: "POST", signal: AbortSignal.timeout(90_000) });
    if (answer.status !== 200) throw new Error(`moving the clock failed: ${answer.status}`);
  }
}

const env = process.env;
env.WALLEOT_STATE_DIR ||= join(tmpdir(), "walleot-node-tests");
export const service =
  env.WALLEOT_API_URL && env.WALLEOT_API_KEY ? new Service(env.WALLEOT_API_URL, env.WALLEOT_API_KEY) : undefined;
export const limited =
  env.WALLEOT_LIMITED_API_URL && env.WALLEOT_LIMITED_API_KEY && env.WALLEOT_LIMITED_CLOCK_URL
    ? new LimitedService(env.WALLEOT_LIMITED_API_URL, env.WALLEOT_LIMITED_API_KEY, env.WALLEOT_LIMITED_CLOCK_URL)
    : undefined;

/** Test options that skip, with the reason shown, when no service is named. */
export const needsService = service ? {} : { skip: "WALLEOT_API_URL and WALLEOT_API_KEY name no service" };
export const needsLimited = limited
  ? {}
  : { skip: "no rate-limited service named by WALLEOT_LIMITED_API_URL, _KEY and _CLOCK_URL" };

export const redisUrl = env.WALLEOT_REDIS_URL || undefined;
export const needsRedis = redisUrl ? {} : { skip: "WALLEOT_REDIS_URL names no Redis (such as redis://127.0.0.1:6379)" };
/** Both a service and a Redis, or the reason the test is skipped. */
export const needsServiceAndRedis = service ? needsRedis : needsService;

/** Runs `body` with a Redis key prefix of its own, whose keys are deleted afterwards. */
export async function withPrefix(body) {
  const prefix = `walleot-test:${randomUUID().replaceAll("-", "")}:`;
  try {
    return await body(prefix);
  } finally {
    const client = new Redis(redisUrl);
    try {
      let cursor = "0";
      do {
        const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        if (keys.length > 0) await client.del(...keys);
        cursor = next;
      } while (cursor !== "0");
    } finally {
      client.disconnect();
    }
  }
}

/** A local port nothing listens on. */
export async function closedPort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const EXAMPLE = fileURLToPath(new URL("../examples/paid_server.mjs", import.meta.url));

/** The example (examples/paid_server.mjs) over streamable HTTP on a free port; resolves once it prints its address. */
export async function httpExample(mode, extra = []) {
  const child = spawn(process.execPath, [EXAMPLE, "--mode", mode, "--http", "127.0.0.1:0", ...extra], {
    env: { ...process.env, WALLEOT_API_URL: service.url, WALLEOT_API_KEY: service.key },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let seen = "";
  const url = await new Promise((resolve, reject) => {
    child.stderr.on("data", (chunk) => {
      seen += chunk;
      const found = /MCP over streamable HTTP at (http:\/\/\S+\/mcp)/.exec(seen);
      if (found) resolve(found[1]);
    });
    child.once("exit", (code) => reject(new Error(`the example exited (${code}): ${seen}`)));
  });
  return {
    url,
    async stop() {
      child.kill();
      if (child.exitCode === null) await once(child, "exit");
    },
  };
}

/** A pending payment of `add`, for the store tests. */
export function payment(id, { owner = "alice", expires = 1000, data = "x" } = {}) {
  return {
    paymentId: id,
    sessionId: `sess_${id}`,
    paymentUrl: `http://pay/${id}`,
    tool: "add",
    arguments: { data },
    argumentsHash: argumentsHash({ data }),
    price: new Price(19, "USD"),
    subject: undefined,
    owner,
    expiresAt: "",
    expiresUnix: expires,
  };
}

export function text(result) {
  return result.content
    .filter((c) => c.type === "text")
    .map((c) => c.text)
    .join(" ");
}

export function status(result) {
  return result.structuredContent?.status;
}

/** The session id in the checkout link of a payment request (or any text holding one). */
export function sessionOf(answerOrText) {
  const shown = typeof answerOrText === "string" ? answerOrText : answerOrText.structuredContent.paymentUrl;
  const found = /\/checkout\/(sess_[A-Za-z0-9]+)/.exec(shown);
  if (found === null) throw new Error(`no checkout link in ${shown}`);
  return found[1];
}

/**
 * Servers with priced tools of every shape, and how often each ran. Every server it
 * makes shares one Walleot, as the McpServers of one HTTP service do.
 */
export class Counted {
  constructor(svc, { mode, before = false, transport = "http", ...options } = {}) {
    this.runs = {};
    this.before = before;
    this.transport = transport;
    this.walleot = new Walleot({ apiKey: svc.key, baseUrl: svc.url, mode, log: () => {}, ...options });
    this.clients = [];
  }

  ran(name) {
    this.runs[name] = (this.runs[name] ?? 0) + 1;
  }

  makeServer() {
    const server = new McpServer({ name: "paid-test", version: "0.0.1" });
    if (!this.before) this.walleot.install(server);
    server.registerTool(
      "add",
      { description: "Adds two numbers.", inputSchema: { a: z.number(), b: z.number() }, price: { amount: 0.19, currency: "USD" } },
      async ({ a, b }) => {
        this.ran("add");
        await sleep(50);
        return { content: [{ type: "text", text: String(a + b) }] };
      },
    );
    server.registerTool(
      "premium_analysis",
      { inputSchema: { data: z.string() }, price: { amount: 0.5, currency: "USD" } },
      ({ data }) => {
        // not async
        this.ran("premium_analysis");
        return { content: [{ type: "text", text: `${data.split(/\s+/).filter(Boolean).length} words` }] };
      },
    );
    server.registerTool(
      "with_extra",
      {
        inputSchema: z.object({ n: z.number().int() }),
        outputSchema: { double: z.number() },
        price: { amount: "0.29", currency: "usd" },
      },
      async ({ n }, extra) => {
        this.ran("with_extra");
        return {
          content: [{ type: "text", text: JSON.stringify({ double: n * 2, request: extra.requestId !== undefined }) }],
          structuredContent: { double: n * 2 },
        };
      },
    );
    server.registerTool(
      "broken",
      { inputSchema: { n: z.number().int() }, price: { amount: 1, currency: "USD" } },
      async () => {
        this.ran("broken");
        throw new Error("the tool failed");
      },
    );
    server.registerTool("free", { inputSchema: { x: z.number().int() } }, async ({ x }) => {
      this.ran("free");
      return { content: [{ type: "text", text: String(x) }] };
    });
    if (this.before) this.walleot.install(server);
    return server;
  }

  /**
   * A connected official client. `elicitation`: a handler of elicitation requests (the
   * client then declares form and URL elicitation, or only `elicitationModes`);
   * `onListChanged`: called on each tools/list_changed notification; `credential`: the
   * `Authorization` header every HTTP request carries.
   */
  async connect({ elicitation, elicitationModes = ["form", "url"], onListChanged, credential } = {}) {
    const capabilities = {};
    if (elicitation) capabilities.elicitation = Object.fromEntries(elicitationModes.map((m) => [m, {}]));
    const client = new Client({ name: "walleot-test", version: "0.0.1" }, { capabilities });
    if (elicitation) client.setRequestHandler(ElicitRequestSchema, (request) => elicitation(request.params));
    if (onListChanged) client.setNotificationHandler(ToolListChangedNotificationSchema, async () => onListChanged());
    if (this.transport === "memory") {
      const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
      await this.makeServer().connect(serverSide);
      await client.connect(clientSide);
    } else {
      const requestInit = credential === undefined ? undefined : { headers: { Authorization: credential } };
      await client.connect(new StreamableHTTPClientTransport(new URL(await this.url()), { requestInit }));
    }
    this.clients.push(client);
    return client;
  }

  /** The address of this server over streamable HTTP (stateless if `transport` says so). */
  async url() {
    if (this.http === undefined) {
      this.http = await serveHttp(() => this.makeServer(), "127.0.0.1:0", { stateless: this.transport === "stateless" });
    }
    return `http://127.0.0.1:${this.http.address().port}/mcp`;
  }

  async close() {
    await Promise.all(this.clients.map((c) => c.close().catch(() => {})));
    if (this.http !== undefined) {
      await this.http.closeSessions();
      this.http.closeAllConnections();
      await new Promise((resolve) => this.http.close(resolve));
    }
  }
}

/** Calls `tool` and checks that the answer asks for payment. */
export async function required(assert, client, tool, args) {
  const answer = await client.callTool({ name: tool, arguments: args });
  assert.equal(answer.isError, true, text(answer));
  assert.equal(status(answer), "payment_required", text(answer));
  return answer;
}

/** Runs `body` with a Counted server, closed afterwards. */
export async function withServer(svc, options, body) {
  const server = new Counted(svc, options);
  try {
    return await body(server);
  } finally {
    await server.close();
  }
}
