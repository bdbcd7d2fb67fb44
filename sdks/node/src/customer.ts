/**
 * The customer reference a payment names, which mandates are granted for.
 *
 * A server that authenticates its users names each one (`identify`); a stdio server
 * serves one user, its installation's, whose reference is kept in a file so that it
 * stays the same from one run to the next.
 */

import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

/** What the service accepts: 1 to 255 printable ASCII characters. */
export function isValidCustomer(reference: unknown): reference is string {
  return typeof reference === "string" && /^[\x20-\x7e]{1,255}$/.test(reference);
}

/**
 * A subject as a customer reference: itself where the service accepts it, else its
 * digest (a subject of other characters stays one stable reference).
 */
export function customerOfSubject(subject: string): string {
  if (isValidCustomer(subject)) return subject;
  return `sha256:${createHash("sha256").update(subject, "utf8").digest("hex")}`;
}

/**
 * Where the installation's reference is kept: `$WALLEOT_STATE_DIR`, else
 * `$XDG_STATE_HOME/walleot`, else `~/.local/state/walleot`; the file `customer` there.
 */
export function installationFile(env: NodeJS.ProcessEnv = process.env): string | undefined {
  let dir = env.WALLEOT_STATE_DIR || undefined;
  if (dir === undefined && env.XDG_STATE_HOME) dir = join(env.XDG_STATE_HOME, "walleot");
  if (dir === undefined) {
    const home = env.HOME || homedir();
    if (home) dir = join(home, ".local", "state", "walleot");
  }
  return dir === undefined ? undefined : join(dir, "customer");
}

function kept(file: string): string | undefined {
  try {
    const reference = readFileSync(file, "utf8").trim();
    return isValidCustomer(reference) ? reference : undefined;
  } catch {
    return undefined;
  }
}

/**
 * This installation's reference (`inst_` and 24 random characters), made on first use
 * and read back afterwards; undefined where no file can be kept.
 */
export function installationCustomer(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const file = installationFile(env);
  if (file === undefined) return undefined;
  const found = kept(file);
  if (found !== undefined) return found;
  const fresh = "inst_" + randomBytes(18).toString("base64url");
  try {
    mkdirSync(dirname(file), { recursive: true });
  } catch {
    return undefined;
  }
  try {
    // Made once: a process that lost the race reads the winner's reference.
    writeFileSync(file, fresh, { flag: "wx" });
    return fresh;
  } catch {
    return kept(file);
  }
}

/**
 * The reference of a stdio server's one user: `reference` where valid, else
 * `WALLEOT_CUSTOMER` where valid, else the installation's own.
 */
export function stdioCustomer(reference: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (isValidCustomer(reference)) return reference;
  if (isValidCustomer(env.WALLEOT_CUSTOMER)) return env.WALLEOT_CUSTOMER;
  return installationCustomer(env);
}
