import { createHash, randomBytes } from 'node:crypto';
import type { Video } from '../apivideo/types';
import type { UploadOutcome, UploadRoute } from '../engine/outcome';
import type { WebhookEventType } from '../kernel/webhook-event-types';

interface UploadData {
  uploadId: string;
  route: UploadRoute;
  principal: string;
  uploadTokenId?: string;
  title?: string;
  metadata?: Array<{ key: string; value: string }>;
  bytesReceived: number;
  bytesAcknowledged: number;
  parts: number;
  durationMs: number;
}
export interface UploadCompletedData extends UploadData {
  videoId: string;
  video: Video;
}
export interface UploadFailedData extends UploadData {
  videoId?: string;
  code: string;
  containerDeleted: boolean;
}
export interface WebhookTestData {
  principal: string;
}

/** The Standard Webhooks payload shape: `type`, `timestamp`, `data`. */
export interface WebhookEvent {
  /** The `webhook-id`: the same on every attempt and every endpoint, so receivers can dedupe. */
  id: string;
  type: WebhookEventType;
  payload: {
    type: WebhookEventType;
    timestamp: string;
    data: UploadCompletedData | UploadFailedData | WebhookTestData;
  };
}

export function newEventId(): string {
  return `msg_${randomBytes(16).toString('base64url')}`;
}

/**
 * An upload's ending has one id, derived from the upload: should the same ending be reported
 * again (an instance that died between reporting it and recording that it did), the outbox and
 * the receivers see the same event, not a second one.
 */
export function outcomeEventId(outcome: UploadOutcome, type: WebhookEventType): string {
  const hash = createHash('sha256')
    .update(`${outcome.route}\0${outcome.uploadId}\0${outcome.videoId ?? ''}\0${type}`)
    .digest('base64url');
  return `msg_${hash.slice(0, 22)}`;
}

export function eventFromOutcome(outcome: UploadOutcome, now = new Date()): WebhookEvent {
  const common: UploadData = {
    uploadId: outcome.uploadId,
    route: outcome.route,
    principal: outcome.principal,
    ...(outcome.uploadTokenId !== undefined && { uploadTokenId: outcome.uploadTokenId }),
    ...(outcome.title !== undefined && { title: outcome.title }),
    ...(outcome.metadata !== undefined && { metadata: outcome.metadata }),
    bytesReceived: outcome.bytesReceived,
    bytesAcknowledged: outcome.bytesAcknowledged,
    parts: outcome.parts,
    durationMs: outcome.durationMs,
  };
  if (outcome.kind === 'completed') {
    return build(
      'upload.completed',
      now,
      { ...common, videoId: outcome.videoId, video: outcome.video },
      outcomeEventId(outcome, 'upload.completed'),
    );
  }
  const type = outcome.kind === 'expired' ? 'upload.expired' : 'upload.failed';
  return build(
    type,
    now,
    {
      ...common,
      ...(outcome.videoId !== undefined && { videoId: outcome.videoId }),
      code: outcome.code,
      containerDeleted: outcome.containerDeleted,
    },
    outcomeEventId(outcome, type),
  );
}

export function testEvent(principal: string, now = new Date()): WebhookEvent {
  return build('webhook.test', now, { principal });
}

function build(
  type: WebhookEventType,
  now: Date,
  data: WebhookEvent['payload']['data'],
  id = newEventId(),
): WebhookEvent {
  return { id, type, payload: { type, timestamp: now.toISOString(), data } };
}
