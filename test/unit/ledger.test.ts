/** The part ledger: a number, once sent, is bound to its bytes; the prefix grows only in order. */
import {
  LedgerError,
  acknowledgedBytes,
  emptyLedger,
  mayHaveCompleted,
  recordAcknowledged,
  recordReceived,
  recordSending,
  recordUnknown,
  recordUploaded,
  unsettled,
  type PartLedger,
} from '../../src/engine/ledger';

const part = (number: number, size: number, last = false) => ({
  number,
  from: (number - 1) * 10,
  size,
  last,
});

function ledgerWith(...steps: Array<(l: PartLedger) => void>): PartLedger {
  const ledger = emptyLedger();
  for (const step of steps) step(ledger);
  return ledger;
}

test.each([
  ['the same size again', part(1, 10), undefined],
  ['another size', part(1, 12), /cannot become 12 bytes/],
  ['now labelled last', part(1, 10, true), /cannot become 10 bytes, the last/],
])('a part sent again: %s', (_what, again, error) => {
  const ledger = ledgerWith((l) => recordSending(l, part(1, 10)));
  recordUnknown(ledger, 1);
  const send = () => recordSending(ledger, again);
  if (error) expect(send).toThrow(error);
  else {
    send();
    expect(ledger.parts).toEqual([{ ...part(1, 10), state: 'sending' }]);
  }
});

test('an acknowledged part is never sent again', () => {
  const ledger = ledgerWith(
    (l) => recordSending(l, part(1, 10)),
    (l) => recordAcknowledged(l, 1),
  );
  expect(() => recordSending(ledger, part(1, 10))).toThrow(LedgerError);
});

test('the prefix grows only through contiguous acknowledged parts, and keeps the record small', () => {
  const ledger = ledgerWith(
    (l) => recordSending(l, part(1, 10)),
    (l) => recordSending(l, part(2, 10)),
    (l) => recordSending(l, part(3, 4, true)),
  );
  expect(recordAcknowledged(ledger, 2)).toBe(false);
  expect([ledger.ackedParts, ledger.ackedBytes, acknowledgedBytes(ledger)]).toEqual([0, 0, 10]);
  expect(recordAcknowledged(ledger, 1)).toBe(true);
  expect([ledger.ackedParts, ledger.ackedBytes, ledger.parts.length]).toEqual([2, 20, 1]);
  expect(mayHaveCompleted(ledger)).toBe(true);
  recordAcknowledged(ledger, 3);
  expect(ledger).toEqual({ ackedParts: 3, ackedBytes: 24, parts: [], complete: true });
  expect(mayHaveCompleted(ledger)).toBe(false);
});

test('api.video’s receivedParts settle what it holds; the rest stays bound and unsettled', () => {
  const ledger = ledgerWith(
    (l) => recordSending(l, part(1, 10)),
    (l) => recordSending(l, part(2, 10)),
    (l) => recordUnknown(l, 2),
  );
  expect(recordReceived(ledger, [2])).toBe(true);
  expect(unsettled(ledger).map((p) => p.number)).toEqual([1]);
  expect(recordReceived(ledger, [1, 2])).toBe(true);
  expect([ledger.ackedParts, ledger.ackedBytes]).toEqual([2, 20]);
});

test('"uploaded" completes only an upload that put a last part on the wire', () => {
  const mine = ledgerWith(
    (l) => recordSending(l, part(1, 10)),
    (l) => recordSending(l, part(2, 3, true)),
  );
  expect(recordUploaded(mine)).toBe(true);
  expect(mine).toMatchObject({ complete: true, ackedParts: 2, ackedBytes: 13 });
  // A video the client named already had a source: not this upload's completion.
  const someoneElses = ledgerWith((l) => recordSending(l, part(1, 10)));
  expect(recordUploaded(someoneElses)).toBe(false);
  expect(someoneElses.complete).toBe(false);
});
