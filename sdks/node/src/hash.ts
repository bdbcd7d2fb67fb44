/**
 * The canonical hash a payment binds its arguments with: SHA-256 (hex) of the
 * arguments as compact JSON with keys sorted by code point at every depth, the text
 * Python's `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
 * writes. The Python SDK and walleot-mcp hash the same way, so the same arguments
 * hash the same in all three.
 *
 * Numbers are written as Python writes the value its JSON parser reads from the text
 * JavaScript sends: an integer below 1e21 as its digits, any other number as Python's
 * `repr` of a float (`1e-07`, `1e+21`). A client that sends `2.0` reaches a Node
 * server as 2, and so hashes as `2`.
 */

import { createHash } from "node:crypto";

export function argumentsHash(args: Record<string, unknown>): string {
  return createHash("sha256").update(canonicalJson(args), "utf8").digest("hex");
}

export function canonicalJson(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      return pythonNumber(value);
    case "string":
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) {
        return `[${value.map((item) => (item === undefined ? "null" : canonicalJson(item))).join(",")}]`;
      }
      const entries = Object.entries(value as Record<string, unknown>)
        .filter(([, item]) => item !== undefined && typeof item !== "function")
        .sort(([a], [b]) => byCodePoint(a, b));
      return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(",")}}`;
    }
    default:
      throw new TypeError(`arguments hold a ${typeof value}, which JSON cannot carry`);
  }
}

/** Python orders strings by code point; JavaScript's `<` by UTF-16 unit. */
function byCodePoint(a: string, b: string): number {
  const left = a[Symbol.iterator]();
  const right = b[Symbol.iterator]();
  for (;;) {
    const x = left.next();
    const y = right.next();
    if (x.done || y.done) return x.done && y.done ? 0 : x.done ? -1 : 1;
    const diff = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (diff !== 0) return diff;
  }
}

function pythonNumber(value: number): string {
  if (!Number.isFinite(value)) throw new TypeError(`arguments hold ${value}, which JSON cannot carry`);
  if (Number.isInteger(value) && Math.abs(value) < 1e21) return BigInt(value).toString();
  // Python's float repr: the shortest round-trip digits, written positionally while
  // the decimal point falls within 16 places of them, else as d.ddde+XX.
  const [mantissa, exp] = value.toExponential().split("e");
  const sign = mantissa.startsWith("-") ? "-" : "";
  const digits = mantissa.replace("-", "").replace(".", "");
  const point = Number(exp) + 1;
  if (point > -4 && point <= 16) {
    if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
    if (point >= digits.length) return `${sign}${digits}${"0".repeat(point - digits.length)}.0`;
    return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
  }
  const e = Number(exp);
  const head = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${head}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
}
