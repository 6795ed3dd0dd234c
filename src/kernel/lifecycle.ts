/**
 * The process's drain state, shared by readiness, admission and the uploads in progress. On a
 * signal, new uploads are refused while those in progress run on for the grace period; what is
 * left then is aborted with the usual clean-up.
 */
export class Lifecycle {
  draining = false;
  private readonly uploads = new Set<AbortController>();
  private idle: (() => void) | undefined;

  /** Registers an upload in progress; call the returned function when it ends. */
  track(stop: AbortController): () => void {
    this.uploads.add(stop);
    return () => {
      this.uploads.delete(stop);
      if (this.uploads.size === 0) this.idle?.();
    };
  }

  get inProgress(): number {
    return this.uploads.size;
  }

  /**
   * Resolves once no upload is left: at once, or when they finish, or after aborting them when the
   * grace ends (after `graceMs`, or sooner with `endGrace()`).
   */
  async drain(graceMs: number, reason: () => Error): Promise<'finished' | 'aborted'> {
    this.draining = true;
    if (this.uploads.size === 0) return 'finished';
    const done = new Promise<void>((resolve) => (this.idle = resolve));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'aborted'>((resolve) => {
      this.graceEnd = () => resolve('aborted');
      timer = setTimeout(this.graceEnd, graceMs);
    });
    const outcome = await Promise.race([done.then(() => 'finished' as const), graceOver]);
    clearTimeout(timer);
    this.graceEnd = undefined;
    if (outcome === 'aborted') {
      for (const stop of this.uploads) stop.abort(reason());
      await done;
    }
    return outcome;
  }

  /** Ends a drain's grace now: what is left is aborted (a second signal, an impatient operator). */
  endGrace(): void {
    this.graceEnd?.();
  }

  private graceEnd: (() => void) | undefined;
}
