/**
 * `price` in `registerTool`'s config. McpServer drops fields it does not know, so
 * walleot wraps `registerTool`: the price is checked where it is written (an inexact
 * one throws `PriceError` at registration, never at the first call) and kept on the
 * registered tool, where the payment flows read it at request time.
 *
 * The wrap is put on McpServer's prototype when this module loads, so tools
 * registered before `installWalleot` keep their price too, and on each installed
 * server, for an McpServer from another copy of the SDK. Apart from taking `price`
 * out of the config, `registerTool` behaves as before.
 */

import { McpServer, type RegisteredTool } from "@modelcontextprotocol/sdk/server/mcp.js";
import { Price, PriceError } from "./price.js";

// Shared by every copy of walleot in a process.
const PRICE = Symbol.for("walleot.price");
const WRAPPED = Symbol.for("walleot.registerTool");

type RegisterTool = (this: unknown, name: string, config: Record<string, unknown>, cb: unknown) => RegisteredTool;

function readPrice(name: string, price: unknown): Price {
  if (typeof price !== "object" || price === null) {
    throw new PriceError(`the price of \`${name}\` must be like { amount: 0.50, currency: "USD" }`);
  }
  const { amount, currency } = price as { amount?: unknown; currency?: unknown };
  return Price.of(amount, currency);
}

function wrap(original: RegisterTool): RegisterTool {
  if ((original as unknown as Record<symbol, unknown>)[WRAPPED]) return original;
  const registerTool: RegisterTool = function (this: unknown, name, config, cb) {
    if (config === null || typeof config !== "object" || !("price" in config)) {
      return original.call(this, name, config, cb);
    }
    const { price, ...rest } = config;
    const fixed = price === undefined ? undefined : readPrice(name, price);
    const tool = original.call(this, name, rest, cb);
    if (fixed !== undefined) Object.defineProperty(tool, PRICE, { value: fixed });
    return tool;
  };
  Object.defineProperty(registerTool, WRAPPED, { value: true });
  return registerTool;
}

const proto = McpServer.prototype as unknown as { registerTool: RegisterTool };
proto.registerTool = wrap(proto.registerTool);

/** Makes `server.registerTool` take `price`, whichever copy of the SDK it comes from. */
export function acceptPrices(server: { registerTool: unknown }): void {
  const own = server as { registerTool: RegisterTool };
  own.registerTool = wrap(own.registerTool);
}

/** The price a registered tool was given, if any. */
export function priceOfTool(tool: RegisteredTool | undefined): Price | undefined {
  const found = (tool as unknown as Record<symbol, unknown> | undefined)?.[PRICE] as Partial<Price> | undefined;
  // Read by shape: another copy of walleot in the process may have set it.
  if (typeof found?.minor !== "number" || typeof found.currency !== "string") return undefined;
  return found instanceof Price ? found : new Price(found.minor, found.currency);
}
