/**
 * The answers a priced tool gives instead of its result: a payment request, a
 * refusal, a settlement still under way, a service that could not help.
 *
 * Every one is a tool result with `isError: true`, in every mode: the tool's work was
 * not handed out, and a client that looks only at `isError` must never mistake a
 * payment link for the tool's answer. `structuredContent.status` tells them apart.
 * The texts are those of the Python SDK, word for word.
 */

import type { ServiceError } from "./client.js";
import type { Price } from "./price.js";
import type { PendingPayment, ToolResult } from "./store.js";

/** Where warnings go; `installWalleot` takes its own. */
export type Log = (message: string) => void;

function result(text: string, structured: Record<string, unknown>): ToolResult {
  return { content: [{ type: "text", text }], structuredContent: structured, isError: true };
}

/** The request for payment: `payment_required` for a new payment, `pending` for one the payer has not paid yet. */
export function paymentRequired(
  p: PendingPayment,
  price: Price,
  nextStep: string,
  status: "payment_required" | "pending" = "payment_required",
): ToolResult {
  const structured = {
    status,
    paymentId: p.paymentId,
    paymentUrl: p.paymentUrl,
    amount: price.majorNumber(),
    amountMinor: price.minor,
    currency: price.currency.toUpperCase(),
    expiresAt: p.expiresAt,
    tool: p.tool,
    nextStep,
  };
  const text =
    status === "pending"
      ? `The payment of ${price.display()} is not completed yet. Open ${p.paymentUrl} to pay, ` +
        `then ${nextStep}. payment_id: ${p.paymentId}`
      : `\`${p.tool}\` costs ${price.display()}. Open ${p.paymentUrl} to pay, then ${nextStep}. ` +
        `payment_id: ${p.paymentId}`;
  return result(text, structured);
}

/** The tool ran and the payer approved, but the held funds are not captured yet: the result waits until they are. */
export function settling(p: PendingPayment, retryIn: number, nextStep: string): ToolResult {
  const secs = Math.max(Math.trunc(retryIn + 0.999), 1);
  const message =
    `The payment for \`${p.tool}\` is being settled (the payment service asked to wait); ` +
    `the result is kept: in ${secs} s, ${nextStep} again to get it.`;
  return result(message, { status: "settling", paymentId: p.paymentId, retryAfter: secs, message });
}

export function refusal(message: string): ToolResult {
  return result(message, { status: "refused", message });
}

/** A payment id this server does not know, or knows for another tool or caller (those read the same). */
export function unknownPayment(tool: string): ToolResult {
  return refusal(
    `unknown payment_id for \`${tool}\`: this server does not know it (it may have restarted, or the payment expired). ` +
      "Nothing is charged for it: funds a payer approved are only held, and return to the payer by themselves " +
      `at the hold deadline. Call \`${tool}\` again for a new payment link.`,
  );
}

/** The payment service did not help. Its address and details go to the log, not to the client. */
export function serviceFailure(error: ServiceError, log: Log = () => {}): ToolResult {
  if (error.status === 429) {
    const secs = Math.max(error.retryAfter || 60, 1);
    log(`the payment service is rate limiting this server: ${error.message}`);
    const message = `rate limited by the payment service, retry in ${secs} s`;
    return result(`${message}; nothing was charged`, { status: "rate_limited", retryAfter: secs, message });
  }
  let message: string;
  if (error.status === undefined) {
    message = "the payment service could not be reached; nothing was charged, try again";
  } else if (error.status >= 500) {
    message = "the payment service failed; nothing was charged, try again";
  } else {
    message = "the payment service refused the request; nothing was charged";
  }
  log(`a call to the payment service failed: ${error.message}`);
  return result(message, { status: "error", message });
}

export function storeFailure(error: unknown, log: Log = () => {}): ToolResult {
  log(`the payment store failed: ${String(error)}`);
  const message = "the server could not keep the payment; nothing was charged, try again";
  return result(message, { status: "error", message });
}

/** A paid tool that failed in a way the server turned into an exception. */
export function toolFailure(text: string): ToolResult {
  return { content: [{ type: "text", text }], isError: true };
}

/** Arguments the tool would refuse: the tool's own error, before any money is asked for. */
export function invalidArguments(tool: string, problem: string): ToolResult {
  return {
    content: [
      { type: "text", text: `Error executing tool ${tool}: ${problem}` },
      { type: "text", text: "invalid arguments; nothing was charged" },
    ],
    isError: true,
  };
}
