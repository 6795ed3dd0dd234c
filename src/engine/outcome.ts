import type { Video } from '../apivideo/types';
export type UploadRoute = 'videos' | 'resumable' | 'upload-token';
interface OutcomeBase {
  uploadId: string; // tus upload id, or the request id for one-request uploads
  route: UploadRoute;
  principal: string; // who uploaded (for an upload token: the minting principal)
  uploadTokenId?: string; // the upload token's public id, when one was used
  tokenUse?: string; // the key of the token use this upload counted (relay-internal, never sent)
  videoId?: string; // undefined when no container existed
  title?: string; // as sent to api.video when the relay created the container
  metadata?: Array<{ key: string; value: string }>; // as sent to api.video
  bytesReceived: number; // file bytes received from the client
  bytesAcknowledged: number; // file bytes api.video acknowledged
  parts: number; // parts acknowledged
  retries: number;
  durationMs: number;
}
export interface UploadCompleted extends OutcomeBase {
  kind: 'completed';
  videoId: string;
  video: Video;
}
export interface UploadFailed extends OutcomeBase {
  kind: 'failed' | 'expired'; // expired: a resumable session swept by the expiry sweep
  code: string; // the RelayError code (src/kernel/errors.ts), or 'client_aborted'
  containerDeleted: boolean;
}
export type UploadOutcome = UploadCompleted | UploadFailed;
/** Consumers of outcomes (metrics+log are built in; webhooks add one). Awaited BEFORE the
 * client's upload is answered: a sink that must be durable (an outbox) writes before resolving. */
export interface OutcomeSink {
  record(outcome: UploadOutcome): Promise<void>;
}
