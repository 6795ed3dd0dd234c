import type { Logger } from 'pino';
import type { OutcomeSink, UploadOutcome } from '../engine/outcome';
import type { UploadTokens } from './tokens';

/**
 * The one place an upload token's use is settled: an upload that ends without a video (failed,
 * terminated, expired; refused once it had begun) gives its use back, and one that completes
 * keeps it for good. Every route's uploads end through the engine, which tells this sink before
 * the client is answered, so a client's retry right after a refusal finds its use back.
 *
 * Settled by the use's key, not by the upload: an ending reported twice (a sweep that retries
 * after the session could not be removed) gives the use back once, and nothing after a
 * completion gives it back at all.
 */
export class TokenUseSettlement implements OutcomeSink {
  constructor(
    private readonly tokens: UploadTokens,
    private readonly logger: Logger,
  ) {}

  async record(outcome: UploadOutcome): Promise<void> {
    const { uploadTokenId, tokenUse } = outcome;
    if (uploadTokenId === undefined || tokenUse === undefined) return;
    // Gone a day after the token expired, and with it anything left to settle.
    const hash = await this.tokens.store.hashOfId(uploadTokenId);
    if (hash === undefined) return;
    if (outcome.kind === 'completed') return this.tokens.store.keep(hash, tokenUse);
    if (await this.tokens.store.refund(hash, tokenUse))
      this.logger.info(
        {
          event: 'upload_token_use_refunded',
          uploadTokenId,
          uploadId: outcome.uploadId,
          route: outcome.route,
          code: outcome.code,
        },
        'upload token use given back: the upload ended without a video',
      );
  }
}
