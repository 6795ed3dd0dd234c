/** Which request a fault applies to. `part` without a number means any part. */
export type FaultTarget = 'create' | 'get' | 'part' | 'status' | 'delete' | 'list' | 'auth' | 'any';

export interface FaultRule {
  target: FaultTarget;
  part?: number;
  /** Answer this status (e.g. 429, 500) instead of handling the request. */
  status?: number;
  /** With a 429: seconds sent in Retry-After and X-RateLimit-Retry-After. */
  retryAfter?: number;
  /** Wait this long (after reading the body) before answering. */
  delayMs?: number;
  /** Destroy the connection after the first chunk of the body. */
  drop?: boolean;
  /**
   * A part only: keep it (as api.video would), then drop the connection instead of answering, as
   * a reset or a proxy timeout loses an answer after the work was done.
   */
  loseAnswer?: boolean;
  /** How many matching requests this rule hits; default 1. */
  times?: number;
}

export interface RequestKind {
  target: Exclude<FaultTarget, 'any'>;
  part?: number;
}

export class FaultPlan {
  private rules: Array<FaultRule & { left: number }> = [];

  add(rule: FaultRule): void {
    this.rules.push({ ...rule, left: rule.times ?? 1 });
  }

  clear(): void {
    this.rules = [];
  }

  /** The first matching rule with uses left, spent by one; undefined when none. */
  take(kind: RequestKind): FaultRule | undefined {
    const rule = this.rules.find((r) => r.left > 0 && matches(r, kind));
    if (rule) rule.left -= 1;
    return rule;
  }
}

function matches(rule: FaultRule, kind: RequestKind): boolean {
  if (rule.target === 'any') return true;
  if (rule.target !== kind.target) return false;
  return rule.part === undefined || rule.part === kind.part;
}
