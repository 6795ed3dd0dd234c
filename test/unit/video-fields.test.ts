import { RelayError } from '../../src/kernel/errors';
import {
  fieldValuesFromQuery,
  titleFromFilename,
  uploadTarget,
} from '../../src/engine/video-fields';

const fields = (entries: Array<[string, string]>) => {
  const map = new Map<string, string[]>();
  for (const [k, v] of entries) map.set(k, [...(map.get(k) ?? []), v]);
  return map;
};

test.each([
  ['clip.mp4', 'clip'],
  ['my.holiday.mov', 'my.holiday'],
  ['C:\\videos\\x.avi', 'x'],
  ['noext', 'noext'],
  ['.mp4', 'Untitled'],
  [undefined, 'Untitled'],
])('title from %p is %p', (filename, title) => {
  expect(titleFromFilename(filename)).toBe(title);
});

test('all fields become the creation payload', () => {
  const target = uploadTarget(
    fields([
      ['title', 'T'],
      ['description', 'D'],
      ['public', 'false'],
      ['tags', 'a'],
      ['tags', 'b'],
      ['metadata', '{"k":"v"}'],
      ['playerId', 'pt1'],
    ]),
    'f.mp4',
  );
  expect(target).toEqual({
    kind: 'create',
    payload: {
      title: 'T',
      description: 'D',
      public: false,
      tags: ['a', 'b'],
      metadata: [{ key: 'k', value: 'v' }],
      playerId: 'pt1',
    },
  });
});

test('videoId names an existing container', () => {
  expect(uploadTarget(fields([['videoId', 'vi4blUQJFrYWbaG44NChkH27']]), undefined)).toEqual({
    kind: 'existing',
    videoId: 'vi4blUQJFrYWbaG44NChkH27',
  });
});

test.each(['vi/../x', '../x', 'vi123', 'x'.repeat(60)])(
  'videoId=%j is invalid_video_id: never sent to api.video',
  (value) => {
    expect(() => uploadTarget(fields([['videoId', value]]), 'a.mp4')).toThrow(
      expect.objectContaining({ code: 'invalid_video_id' }) as unknown as RelayError,
    );
  },
);

test.each([
  ['public', 'yes'],
  ['metadata', 'not json'],
  ['metadata', '["a"]'],
  ['metadata', '{"n":1}'],
  ['title', 'x'.repeat(5000)],
])('%s=%j is invalid_field', (name, value) => {
  expect(() => uploadTarget(fields([[name, value]]), 'a.mp4')).toThrow(
    expect.objectContaining({ code: 'invalid_field' }) as unknown as RelayError,
  );
});

test('a field given twice where once is allowed is invalid_field', () => {
  expect(() =>
    uploadTarget(
      fields([
        ['title', 'a'],
        ['title', 'b'],
      ]),
      undefined,
    ),
  ).toThrow(RelayError);
});

test('query strings keep repeated names', () => {
  expect(fieldValuesFromQuery({ tags: ['a', 'b'], title: 'x' })).toEqual(
    new Map([
      ['tags', ['a', 'b']],
      ['title', ['x']],
    ]),
  );
});
