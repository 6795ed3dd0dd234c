import { createHash } from 'node:crypto';
import {
  OWNER_METADATA_KEY,
  isOwnedBy,
  ownedTarget,
  ownerMark,
  withOwner,
} from '../../src/engine/owner';

const mark = (principal: string) => ({ key: OWNER_METADATA_KEY, value: ownerMark(principal) });

test('the mark is stable, 32 hex digits, and says nothing of the principal', () => {
  expect(ownerMark('jwt:user-1')).toBe(ownerMark('jwt:user-1'));
  expect(ownerMark('jwt:user-1')).toMatch(/^[0-9a-f]{32}$/);
  expect(ownerMark('jwt:user-1')).not.toBe(ownerMark('jwt:user-2'));
  // Not the bare SHA-256 of the principal either (a table of hashed user ids would find those).
  expect(ownerMark('jwt:user-1')).not.toBe(
    createHash('sha256').update('jwt:user-1').digest('hex').slice(0, 32),
  );
});

test('withOwner replaces any client-supplied owner entry and keeps the others', () => {
  const payload = {
    title: 't',
    metadata: [
      { key: OWNER_METADATA_KEY, value: ownerMark('token:bob') },
      { key: 'customer', value: '42' },
      { key: OWNER_METADATA_KEY, value: 'anything' },
    ],
  };
  expect(withOwner(payload, 'token:alice')).toEqual({
    title: 't',
    metadata: [{ key: 'customer', value: '42' }, mark('token:alice')],
  });
  expect(payload.metadata).toHaveLength(3); // the caller's object is not changed
  expect(withOwner({ title: 't' }, 'token:alice').metadata).toEqual([mark('token:alice')]);
});

test('ownedTarget marks a container to create, never a container the client named', () => {
  expect(ownedTarget({ kind: 'create', payload: { title: 't' } }, 'jwt:a')).toEqual({
    kind: 'create',
    payload: { title: 't', metadata: [mark('jwt:a')] },
  });
  const named = { kind: 'existing' as const, videoId: 'viAAAAAAAAAAAA' };
  expect(ownedTarget(named, 'jwt:a')).toBe(named);
});

// [what, metadata, owned by jwt:a]
const VIDEOS: Array<[string, unknown, boolean]> = [
  ['its own mark', [mark('jwt:a')], true],
  ['its own mark among others', [{ key: 'x', value: 'y' }, mark('jwt:a')], true],
  ['another principal’s mark', [mark('jwt:b')], false],
  ['no metadata', undefined, false],
  ['metadata that is not a list', { [OWNER_METADATA_KEY]: ownerMark('jwt:a') }, false],
  ['two marks, one its own', [mark('jwt:a'), mark('jwt:b')], false],
  ['the principal id itself, not its mark', [{ key: OWNER_METADATA_KEY, value: 'jwt:a' }], false],
  ['junk entries', [null, 1, 'x', { key: OWNER_METADATA_KEY }], false],
];
test.each(VIDEOS)('a video with %s: owned %p', (_what, metadata, owned) => {
  expect(isOwnedBy({ videoId: 'viAAAAAAAAAAAA', metadata }, 'jwt:a')).toBe(owned);
});
