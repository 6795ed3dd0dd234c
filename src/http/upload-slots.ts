import type { RequestHandler } from 'express';
import { RelayError } from '../kernel/errors';
import { principalOf } from './client-auth';
import type { Lifecycle } from '../kernel/lifecycle';

/**
 * Admission before a body byte is read: the process-wide and per-client limits on uploads in
 * progress, and the refusal while draining. A slot is held until the response closes, and so is
 * the upload's own cost in the memory budget (its connection, streams and parser: every route's
 * upload requests pass here, whether or not they ever get room for a part).
 */
export function uploadSlots(
  limits: { maxConcurrentUploads: number; maxConcurrentPerClient: number },
  lifecycle: Lifecycle,
  budget?: { chargeUpload(): () => void },
): RequestHandler {
  const perClient = new Map<string, number>();
  let total = 0;
  return (_req, res, next) => {
    if (lifecycle.draining) {
      return next(
        new RelayError('shutting_down', 'The relay is shutting down; retry on another instance.', {
          headers: { 'Retry-After': '5' },
        }),
      );
    }
    if (total >= limits.maxConcurrentUploads) {
      return next(
        new RelayError(
          'too_many_uploads',
          `${limits.maxConcurrentUploads} uploads are in progress; retry shortly.`,
          { headers: { 'Retry-After': '5' } },
        ),
      );
    }
    const who = principalOf(res).id;
    const mine = perClient.get(who) ?? 0;
    if (mine >= limits.maxConcurrentPerClient) {
      return next(
        new RelayError(
          'too_many_uploads_per_client',
          `You have ${mine} uploads in progress; finish one first.`,
          { headers: { 'Retry-After': '5' } },
        ),
      );
    }
    total += 1;
    perClient.set(who, mine + 1);
    const uncharge = budget?.chargeUpload();
    res.once('close', () => {
      uncharge?.();
      total -= 1;
      const left = (perClient.get(who) ?? 1) - 1;
      if (left > 0) perClient.set(who, left);
      else perClient.delete(who);
    });
    next();
  };
}
