/**
 * Per-call prices on the tools of MCP servers built with the official TypeScript SDK
 * (`McpServer`), paid through a Walleot service.
 *
 * ```ts
 * import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
 * import { installWalleot, Mode } from "walleot";
 *
 * const server = new McpServer({ name: "my-server", version: "0.0.1" });
 * installWalleot(server, { apiKey: process.env.WALLEOT_API_KEY!, mode: Mode.TWO_STEP });
 * server.registerTool("premium_analysis", { ..., price: { amount: 0.50, currency: "USD" } }, handler);
 * ```
 *
 * Pending payments live in this process by default; `store: new RedisStore({ url })`
 * shares them between the processes of one server behind a load balancer.
 */

import type { ToolCallback } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { AnySchema, ZodRawShapeCompat } from "@modelcontextprotocol/sdk/server/zod-compat.js";
import type { ToolAnnotations } from "@modelcontextprotocol/sdk/types.js";
import type { ToolPrice } from "./price.js";

export { Mode, parseMode } from "./mode.js";
export { Price, PriceError, MAX_MINOR, exponent, type ToolPrice } from "./price.js";
export { argumentsHash } from "./hash.js";
export {
  MemoryStore,
  StoreError,
  StoreFull,
  TooManyOpen,
  type MemoryStoreOptions,
  type OpenCaps,
  type PaymentRecord,
  type PaymentState,
  type PaymentStore,
  type PendingPayment,
  type ToolResult,
} from "./store.js";
export { RedisStore, StoreUnavailable, type RedisStoreOptions } from "./redis.js";
export { ServiceClient, ServiceError, type Session } from "./client.js";
export {
  DEFAULT_API_URL,
  DEFAULT_MAX_OPEN,
  DEFAULT_MAX_OPEN_PER_CALLER,
  DEFAULT_PAYMENT_TTL,
  Walleot,
  confirmToolName,
  installWalleot,
  type RequestExtra,
  type WalleotOptions,
} from "./walleot.js";

// `price` in registerTool's config, as the reference writes it.
declare module "@modelcontextprotocol/sdk/server/mcp.js" {
  interface McpServer {
    registerTool<
      OutputArgs extends ZodRawShapeCompat | AnySchema,
      InputArgs extends undefined | ZodRawShapeCompat | AnySchema = undefined,
    >(
      name: string,
      config: {
        title?: string;
        description?: string;
        inputSchema?: InputArgs;
        outputSchema?: OutputArgs;
        annotations?: ToolAnnotations;
        _meta?: Record<string, unknown>;
        /** The price of one call, in major units: `{ amount: 0.50, currency: "USD" }`. */
        price?: ToolPrice;
      },
      cb: ToolCallback<InputArgs>,
    ): RegisteredTool;
  }
}
