// The public reference's code, type-checked against the built package (`npm test`
// compiles this file and runs nothing): `price` is part of registerTool's config, and
// the handler's arguments keep their types.

import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { installWalleot, Mode, type Walleot } from "walleot";
import { z } from "zod";

async function performAnalysis(data: string): Promise<string> {
  return data;
}

export function reference(): Walleot {
  const server = new McpServer({ name: "my-server", version: "0.0.1" });

  const walleot = installWalleot(server, {
    apiKey: process.env.WALLEOT_API_KEY!,
    mode: Mode.TWO_STEP, // Mode.ELICITATION where the MCP client supports it
  });

  server.registerTool(
    "premium_analysis",
    {
      title: "Premium Analysis",
      description: "Advanced data analysis with AI.",
      inputSchema: { data: z.string() },
      price: { amount: 0.5, currency: "USD" }, // $0.50 per call
    },
    async ({ data }, extra) => {
      const text: string = await performAnalysis(data);
      void extra.requestId;
      return { content: [{ type: "text", text }] };
    },
  );

  // Tools without a price register as before.
  server.registerTool("ping", { description: "Free." }, async () => ({ content: [{ type: "text", text: "pong" }] }));

  server.registerTool(
    "wrong",
    {
      inputSchema: { n: z.number() },
      // @ts-expect-error a price names its currency
      price: { amount: 1 },
    },
    async ({ n }) => ({ content: [{ type: "text", text: String(n) }] }),
  );

  // @ts-expect-error the handler's argument is a number, not a string
  server.registerTool(
    "typed",
    { inputSchema: { n: z.number() }, price: { amount: "1.00", currency: "EUR" } },
    async ({ n }: { n: string }) => ({ content: [{ type: "text", text: n }] }),
  );
  return walleot;
}
