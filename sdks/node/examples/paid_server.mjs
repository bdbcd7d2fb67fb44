#!/usr/bin/env node
// A small MCP server with a free tool and two priced ones, paid through Walleot.
//
//   WALLEOT_API_KEY=sk_test_... node examples/paid_server.mjs --mode two-step
//   WALLEOT_API_KEY=sk_test_... node examples/paid_server.mjs --mode resubmit --http 127.0.0.1:3001
//   WALLEOT_API_KEY=sk_test_... node examples/paid_server.mjs --http 127.0.0.1:3001 --store redis://127.0.0.1:6379
//
// Over stdio by default; with `--http ADDR` a streamable HTTP endpoint at /mcp, one
// MCP session per client (`--stateless`: none). WALLEOT_API_URL names the service
// (default http://127.0.0.1:8080). With `--store`, pending payments are kept in Redis,
// shared by every process given the same store and `--store-prefix` (several of them
// behind a load balancer). Over stdio, payments name this installation's customer
// reference (WALLEOT_CUSTOMER, else one kept in $WALLEOT_STATE_DIR/customer): once the
// payer grants a mandate for it, covered calls run at once.

import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

import { Mode, RedisStore, Walleot } from "walleot";

/** The example's tools on a new McpServer, priced by `walleot`. */
export function buildServer(walleot, { failingTool = false } = {}) {
  const server = new McpServer({ name: "walleot-paid-example", version: "0.1.0" });
  walleot.install(server);

  server.registerTool("ping", { description: "Answers pong. Free." }, async () => ({
    content: [{ type: "text", text: "pong" }],
  }));

  server.registerTool(
    "add",
    {
      description: "Adds two numbers.",
      inputSchema: { a: z.number(), b: z.number() },
      price: { amount: 0.19, currency: "USD" },
    },
    async ({ a, b }) => ({ content: [{ type: "text", text: String(a + b) }] }),
  );

  server.registerTool(
    "premium_analysis",
    {
      title: "Premium Analysis",
      description: "Advanced data analysis.",
      inputSchema: { data: z.string() },
      price: { amount: 0.5, currency: "USD" },
    },
    async ({ data }) => {
      const words = data.split(/\s+/).filter(Boolean).length;
      return { content: [{ type: "text", text: `${words} words, ${data.length} characters` }] };
    },
  );

  if (failingTool) {
    // Always fails after payment, so that its payment is released, never captured.
    server.registerTool(
      "fragile_report",
      {
        description: "A report whose source is always down.",
        inputSchema: { data: z.string() },
        price: { amount: 0.05, currency: "USD" },
      },
      async ({ data }) => ({
        isError: true,
        content: [{ type: "text", text: `the report source is down; nothing was made of ${data.length} characters` }],
      }),
    );
  }
  return server;
}

/**
 * Serves streamable HTTP at http://ADDR/mcp. Stateful: one McpServer per MCP session,
 * all sharing `walleot`'s payments. Stateless: one per request. Resolves to the
 * node:http server once it listens.
 */
export async function serveHttp(makeServer, addr, { stateless = false } = {}) {
  const sessions = new Map();

  async function handle(req, res) {
    if (new URL(req.url ?? "/", "http://x").pathname !== "/mcp") {
      res.writeHead(404).end();
      return;
    }
    const body = req.method === "POST" ? await readJson(req) : undefined;
    if (stateless) {
      if (req.method !== "POST") {
        res.writeHead(405, { Allow: "POST" }).end();
        return;
      }
      const server = makeServer();
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      res.on("close", () => {
        transport.close();
        server.close();
      });
      await server.connect(transport);
      await transport.handleRequest(req, res, body);
      return;
    }
    const id = req.headers["mcp-session-id"];
    let transport = typeof id === "string" ? sessions.get(id) : undefined;
    if (transport === undefined) {
      if (id !== undefined || req.method !== "POST" || !isInitializeRequest(body)) {
        res.writeHead(id === undefined ? 400 : 404, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message: "no such MCP session" }, id: null }));
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sessionId) => sessions.set(sessionId, transport),
      });
      transport.onclose = () => {
        if (transport.sessionId) sessions.delete(transport.sessionId);
      };
      await makeServer().connect(transport);
    }
    await transport.handleRequest(req, res, body);
  }

  const http = createServer((req, res) => {
    handle(req, res).catch((error) => {
      process.stderr.write(`MCP request failed: ${error}\n`);
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  const { hostname, port } = new URL(`http://${addr}`);
  const host = hostname.replace(/^\[|\]$/g, "") || "127.0.0.1";
  await new Promise((resolve, reject) => {
    http.once("error", reject);
    http.listen(Number(port || 0), host, resolve);
  });
  http.closeSessions = () => Promise.all([...sessions.values()].map((t) => t.close()));
  return http;
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString("utf8");
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return text; // the transport answers the parse error
  }
}

const USAGE = `usage: paid_server.mjs [--mode MODE] [--http ADDR] [--stateless]

An MCP server with priced tools, paid through Walleot.

  --mode MODE   how payments happen: ${Object.values(Mode).join(", ")} (default two-step)
  --http ADDR   serve streamable HTTP at ADDR/mcp (such as 127.0.0.1:3001) instead of stdio
  --stateless   with --http: no MCP sessions, one server per request
  --store URL   keep pending payments in Redis at URL (redis://HOST:PORT/DB), shared with
                every process given the same URL and prefix; default: in this process
  --store-prefix PREFIX
                the Redis key prefix (default walleot:)
  --failing-tool
                also serve fragile_report(data) at 0.05 USD, which always fails: its
                payment is released
`;

async function main() {
  let options;
  try {
    ({ values: options } = parseArgs({
      options: {
        mode: { type: "string", default: "two-step" },
        http: { type: "string" },
        stateless: { type: "boolean", default: false },
        store: { type: "string" },
        "store-prefix": { type: "string", default: "walleot:" },
        "failing-tool": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    process.stderr.write(`${error.message}\n${USAGE}`);
    process.exit(2);
  }
  if (options.help) {
    process.stdout.write(USAGE);
    return;
  }
  let store;
  if (options.store !== undefined) {
    if (!/^(redis|rediss):\/\//.test(options.store)) {
      process.stderr.write(`--store takes a redis:// or rediss:// URL, not ${JSON.stringify(options.store)}\n`);
      process.exit(2);
    }
    store = new RedisStore({ url: options.store, prefix: options["store-prefix"] });
  }
  let walleot;
  try {
    walleot = new Walleot({ mode: options.mode, store }); // WALLEOT_API_KEY, WALLEOT_API_URL
  } catch (error) {
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
  if (options.http === undefined) {
    await buildServer(walleot, { failingTool: options["failing-tool"] }).connect(new StdioServerTransport());
    return;
  }
  const http = await serveHttp(() => buildServer(walleot, { failingTool: options["failing-tool"] }), options.http, {
    stateless: options.stateless,
  });
  const { address, port } = http.address();
  const shown = address.includes(":") ? `[${address}]` : address;
  process.stderr.write(`MCP over streamable HTTP at http://${shown}:${port}/mcp\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
