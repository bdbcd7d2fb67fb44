/**
 * DYNAMIC_TOOLS: which callers have an open payment of which tool, so that a
 * caller's `confirm_<tool>_payment` is listed only while one of its own is open.
 * Expired payments close by themselves, and nothing is kept for them.
 */
export class OpenConfirms {
  // caller -> tool -> payment id -> Unix second its link expires
  private readonly open = new Map<string, Map<string, Map<string, number>>>();

  /** Opens a payment; true when the caller's confirm tool thereby appears. */
  add(owner: string, tool: string, paymentId: string, expires: number, now: number): boolean {
    const before = this.isOpen(owner, tool, now);
    let tools = this.open.get(owner);
    if (tools === undefined) this.open.set(owner, (tools = new Map()));
    let ids = tools.get(tool);
    if (ids === undefined) tools.set(tool, (ids = new Map()));
    ids.set(paymentId, expires);
    return !before;
  }

  /** Closes a payment; true when the caller's confirm tool thereby disappears. */
  close(owner: string, tool: string, paymentId: string, now: number): boolean {
    const before = this.isOpen(owner, tool, now);
    this.open.get(owner)?.get(tool)?.delete(paymentId);
    return before && !this.isOpen(owner, tool, now);
  }

  /** Whether the caller has an open payment of `tool`; forgets expired ones. */
  isOpen(owner: string, tool: string, now: number): boolean {
    const tools = this.open.get(owner);
    if (tools === undefined) return false;
    const ids = tools.get(tool);
    if (ids !== undefined) {
      for (const [id, expires] of ids) if (expires <= now) ids.delete(id);
    }
    const found = ids !== undefined && ids.size > 0;
    for (const [name, left] of tools) if (left.size === 0) tools.delete(name);
    if (tools.size === 0) this.open.delete(owner);
    return found;
  }

  /** Callers with an open payment. */
  get size(): number {
    return this.open.size;
  }
}
