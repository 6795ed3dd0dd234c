import type { Response } from 'express';
import type { Lifecycle } from '../kernel/lifecycle';
import type { RelayMetrics } from '../kernel/metrics';
import { RelayError, ClientGone } from '../kernel/errors';

/** What every request that moves upload bytes gets, whatever its route. */
export interface UploadRequestGuard {
  /** Aborted when the client leaves, the request deadline passes, or a drain runs out of grace. */
  signal: AbortSignal;
  /** Aborted only when a drain runs out of grace: the process is stopping, parts on the wire too. */
  halt: AbortSignal;
  abort(reason: Error): void;
  /** Call once the request is answered or given up. */
  done(): void;
}

export interface GuardDeps {
  lifecycle: Lifecycle;
  metrics: RelayMetrics;
  /** UPLOAD_REQUEST_TIMEOUT_MS; 0: none. */
  requestTimeoutMs: number;
}

/**
 * The request-level guards every upload route shares: the client leaving, the whole-request
 * deadline (enforced here, not by Node, so it ends with a problem answer and a clean-up), the
 * drain (which aborts what is left when the grace period ends) and the in-progress gauge.
 */
export function guardUploadRequest(res: Response, deps: GuardDeps): UploadRequestGuard {
  const stop = new AbortController();
  const onClose = () => res.writableFinished || stop.abort(new ClientGone());
  res.once('close', onClose);
  const ms = deps.requestTimeoutMs;
  const deadline =
    ms > 0
      ? setTimeout(
          () =>
            stop.abort(new RelayError('upload_timeout', `The upload took longer than ${ms} ms.`)),
          ms,
        ).unref()
      : undefined;
  const halt = new AbortController();
  halt.signal.addEventListener('abort', () => stop.abort(halt.signal.reason), { once: true });
  const untrack = deps.lifecycle.track(halt);
  deps.metrics.uploadsInProgress.inc();
  let finished = false;
  return {
    signal: stop.signal,
    halt: halt.signal,
    abort: (reason) => stop.abort(reason),
    done: () => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      res.off('close', onClose);
      deps.metrics.uploadsInProgress.dec();
      untrack();
    },
  };
}
