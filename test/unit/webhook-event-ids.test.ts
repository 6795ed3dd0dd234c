/** An upload's ending has one webhook-id: a repeated report of it is the same event. */
import type { UploadOutcome } from '../../src/engine/outcome';
import { eventFromOutcome } from '../../src/webhooks/events';

const failed = (over: Partial<UploadOutcome> = {}): UploadOutcome =>
  ({
    kind: 'expired',
    uploadId: 'tus-upload-0123456789abc',
    route: 'resumable',
    principal: 'token:abc',
    videoId: 'vi4blUQJFrYWbaG44NChkH27',
    bytesReceived: 0,
    bytesAcknowledged: 0,
    parts: 0,
    retries: 0,
    durationMs: 5,
    code: 'upload_expired',
    containerDeleted: true,
    ...over,
  }) as UploadOutcome;

test('the same ending reported twice: one webhook-id', () => {
  expect(eventFromOutcome(failed()).id).toBe(eventFromOutcome(failed({ durationMs: 99 })).id);
  expect(eventFromOutcome(failed()).id).toMatch(/^msg_[A-Za-z0-9_-]{22}$/);
});

test.each([
  ['another upload', { uploadId: 'tus-upload-other-0123456' }],
  ['another video', { videoId: 'vi4blUQJFrYWbaG44NChkH28' }],
  ['another ending', { kind: 'failed', code: 'upload_terminated' }],
  ['another route', { route: 'upload-token' }],
])('%s: another webhook-id', (_what, over) => {
  expect(eventFromOutcome(failed(over as Partial<UploadOutcome>)).id).not.toBe(
    eventFromOutcome(failed()).id,
  );
});
