import { bindTokenFields } from '../../src/upload-tokens/bind';
import type { UploadTarget } from '../../src/engine/video-fields';
import { redactTokens } from '../../src/kernel/logger';

const client: UploadTarget = {
  kind: 'create',
  payload: {
    title: 'client',
    description: 'client description',
    tags: ['client'],
    metadata: [
      { key: 'userId', value: '1' },
      { key: 'admin', value: 'true' },
    ],
    public: true,
  },
};

test('bound fields win, whole: metadata and tags are replaced, not merged', () => {
  const bound = bindTokenFields(client, {
    fields: { title: 'bound', metadata: [{ key: 'userId', value: '42' }], public: false },
  });
  expect(bound).toEqual({
    kind: 'create',
    payload: {
      title: 'bound',
      description: 'client description',
      tags: ['client'],
      metadata: [{ key: 'userId', value: '42' }],
      public: false,
    },
  });
  expect(client.kind === 'create' && client.payload.title).toBe('client');
});

test('a token without fields leaves a creation as the client asked', () => {
  expect(bindTokenFields(client, { fields: { maxFileSize: 10 } })).toEqual(client);
});

test('a token bound to a video sends the upload there, whatever the client named', () => {
  expect(bindTokenFields(client, { fields: { videoId: 'viBound' } })).toEqual({
    kind: 'existing',
    videoId: 'viBound',
  });
  expect(
    bindTokenFields({ kind: 'existing', videoId: 'viOther' }, { fields: { videoId: 'viBound' } }),
  ).toEqual({ kind: 'existing', videoId: 'viBound' });
});

test('a token not bound to a video refuses a video the client names', () => {
  expect(() => bindTokenFields({ kind: 'existing', videoId: 'viOther' }, { fields: {} })).toThrow(
    expect.objectContaining({ code: 'upload_token_video_mismatch', status: 403 }),
  );
});

test('tokens are scrubbed from log text wherever they appear', () => {
  const token = `to_${'a1B2-_'.repeat(5)}xy`;
  expect(redactTokens(`GET /v1/upload-tokens/${token} and /upload?token=${token}&x=1`)).toBe(
    'GET /v1/upload-tokens/to_[REDACTED] and /upload?token=to_[REDACTED]&x=1',
  );
  expect(redactTokens('upload_to_somewhere')).toBe('upload_to_somewhere');
});
