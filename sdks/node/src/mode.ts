/** How server and client coordinate a payment: the names of the public reference. */

export const Mode = {
  /** The tool answers with link and paymentId; `confirm_<tool>_payment(payment_id)` runs it once paid. */
  TWO_STEP: "two-step",
  /** The tool gains an optional `payment_id`; the retry with the same arguments and the id runs it. */
  RESUBMIT: "resubmit",
  /** The link streams in progress notifications while the call waits for the payer. */
  PROGRESS: "progress",
  /** The server asks the client to show the link through MCP elicitation. */
  ELICITATION: "elicitation",
  /** The confirm tool appears for the paying caller only while its payment is open. */
  DYNAMIC_TOOLS: "dynamic-tools",
  /** Elicitation where the client declares it, else two steps. */
  AUTO: "auto",
} as const;

export type Mode = (typeof Mode)[keyof typeof Mode];

const MODES: readonly Mode[] = Object.values(Mode);

/** Accepts `Mode.TWO_STEP`, "two-step", "two_step" and "TWO_STEP" alike. */
export function parseMode(value: Mode | string): Mode {
  const wanted = String(value).trim().toLowerCase().replaceAll("_", "-");
  const found = MODES.find((mode) => mode === wanted);
  if (found === undefined) {
    throw new RangeError(`unknown mode \`${value}\`; expected one of ${MODES.join(", ")}`);
  }
  return found;
}

/** Every mode, in the order of the reference. */
export const MODE_NAMES: readonly Mode[] = MODES;
