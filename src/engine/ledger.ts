/**
 * The part ledger: every part number an upload has put on the wire, with the bytes it is bound to
 * and what is known of its fate. A part number, once sent, names those bytes for ever: a retry, a
 * resume or a takeover sends exactly them again under that number, and only parts never sent are
 * sized afresh. api.video may keep a part whose answer the relay never saw, and it may refuse a
 * part number sent again with other bytes; keeping the binding makes the relay correct under
 * either reading of the protocol (../shared/apivideo/PROTOCOL.md, "Status").
 *
 * The ledger is plain JSON: it rides inside the upload's state, saved with the session (in Redis
 * when REDIS_URL is set) before each part goes out.
 */

/**
 * - `sending`: put on the wire by a request that may still be waiting for the answer. Read by a
 *   request that holds the upload's lock, it means the same as `unknown`: its sender is gone.
 * - `acknowledged`: api.video answered 201, or listed it in `ingest.receivedParts`.
 * - `unknown`: sent, and the answer was not seen (a reset, a timeout, a 5xx, an abort).
 */
export type PartState = 'sending' | 'acknowledged' | 'unknown';

export interface LedgerPart {
  number: number;
  /** Bytes in the part. For a part the client cut itself and streamed, set once acknowledged. */
  size: number;
  /** Where the part starts in the file, when known (always, for parts the relay cut). */
  from?: number;
  /** Sent as `part N/N`: api.video completes the video once it and every earlier part are in. */
  last: boolean;
  state: PartState;
}

export interface PartLedger {
  /** Parts 1 .. ackedParts are all acknowledged ... */
  ackedParts: number;
  /** ... and hold the file's first ackedBytes bytes. */
  ackedBytes: number;
  /** Parts numbered above that prefix that have been on the wire, by number. */
  parts: LedgerPart[];
  /** The prefix ends with the part labelled last: api.video has the whole source. */
  complete: boolean;
}

export const emptyLedger = (): PartLedger => ({
  ackedParts: 0,
  ackedBytes: 0,
  parts: [],
  complete: false,
});

/** The part recorded under `number` above the acknowledged prefix, if any. */
export function partAt(ledger: PartLedger, number: number): LedgerPart | undefined {
  return ledger.parts.find((p) => p.number === number);
}

/**
 * Records a part about to go on the wire. A number already recorded must be sent with the same
 * bytes: its size and label are checked, and it goes back to `sending`.
 */
export function recordSending(ledger: PartLedger, part: Omit<LedgerPart, 'state'>): void {
  if (part.number <= ledger.ackedParts)
    throw new LedgerError(`part ${part.number} is acknowledged`);
  const known = partAt(ledger, part.number);
  if (known) {
    if (known.state === 'acknowledged')
      throw new LedgerError(`part ${part.number} is acknowledged`);
    if (known.last !== part.last || (known.size > 0 && part.size > 0 && known.size !== part.size))
      throw new LedgerError(
        `part ${part.number} was sent as ${describe(known)}; it cannot become ${describe(part)}`,
      );
    known.state = 'sending';
    return;
  }
  ledger.parts.push({ ...part, state: 'sending' });
  ledger.parts.sort((a, b) => a.number - b.number);
}

/** api.video acknowledged the part (its 201, or its status). Returns whether the prefix grew. */
export function recordAcknowledged(ledger: PartLedger, number: number, size?: number): boolean {
  if (number <= ledger.ackedParts) return false;
  const part = partAt(ledger, number);
  if (!part) throw new LedgerError(`part ${number} was never recorded as sent`);
  part.state = 'acknowledged';
  if (size !== undefined && size > 0) part.size = size;
  return compact(ledger);
}

/** The answer was not seen: api.video may or may not hold the part. */
export function recordUnknown(ledger: PartLedger, number: number): void {
  const part = partAt(ledger, number);
  if (part && part.state !== 'acknowledged') part.state = 'unknown';
}

/**
 * What api.video reported holding (`ingest.receivedParts.parts`): those parts are acknowledged.
 * A part it does not list stays as it was: bound to its bytes, to be sent again exactly.
 */
export function recordReceived(ledger: PartLedger, received: readonly number[]): boolean {
  const have = new Set(received);
  let changed = false;
  for (const part of ledger.parts) {
    if (part.state !== 'acknowledged' && have.has(part.number)) {
      part.state = 'acknowledged';
      changed = true;
    }
  }
  return compact(ledger) || changed;
}

/**
 * api.video reports the source complete. Only a part labelled last that this upload put on the
 * wire can have completed it: without one, the source is someone else's (a video named by the
 * client that already had one), and this upload has not completed. Returns whether it has.
 */
export function recordUploaded(ledger: PartLedger): boolean {
  if (!ledger.complete && !ledger.parts.some((p) => p.last)) return false;
  for (const part of ledger.parts) part.state = 'acknowledged';
  compact(ledger);
  ledger.complete = true;
  return true;
}

/** Parts whose fate nobody is watching: only api.video can say whether it holds them. */
export function unsettled(ledger: PartLedger): LedgerPart[] {
  return ledger.parts.filter((p) => p.state !== 'acknowledged');
}

/**
 * A part labelled last is on the wire and not acknowledged: api.video may have completed the
 * video. Before anything irreversible (failing, deleting, answering), ask it.
 */
export function mayHaveCompleted(ledger: PartLedger): boolean {
  return ledger.parts.some((p) => p.last && p.state !== 'acknowledged');
}

/** Every acknowledged byte: the prefix and the parts acknowledged beyond a gap. */
export function acknowledgedBytes(ledger: PartLedger): number {
  return (
    ledger.ackedBytes +
    ledger.parts.reduce((n, p) => (p.state === 'acknowledged' ? n + p.size : n), 0)
  );
}

export function acknowledgedParts(ledger: PartLedger): number {
  return ledger.ackedParts + ledger.parts.filter((p) => p.state === 'acknowledged').length;
}

/** Where the relay's next new part starts in the file, past every part it has cut so far. */
export function cutEnd(ledger: PartLedger): number {
  const last = ledger.parts.at(-1);
  return last?.from !== undefined ? last.from + last.size : ledger.ackedBytes;
}

/** The highest part number on the wire (0: none). */
export function highestPart(ledger: PartLedger): number {
  return ledger.parts.at(-1)?.number ?? ledger.ackedParts;
}

export class LedgerError extends Error {
  constructor(message: string) {
    super(`part ledger: ${message}`);
    this.name = 'LedgerError';
  }
}

/** Moves acknowledged parts that extend the prefix into it, so the record stays small. */
function compact(ledger: PartLedger): boolean {
  let grew = false;
  for (;;) {
    const next = ledger.parts[0];
    if (!next || next.number !== ledger.ackedParts + 1 || next.state !== 'acknowledged') break;
    ledger.parts.shift();
    ledger.ackedParts += 1;
    ledger.ackedBytes += next.size;
    if (next.last) ledger.complete = true;
    grew = true;
  }
  return grew;
}

function describe(part: { size: number; last: boolean }): string {
  return `${part.size} bytes${part.last ? ', the last' : ''}`;
}

/** A ledger read back from storage, checked field by field rather than cast. */
export function isLedger(value: unknown): value is PartLedger {
  if (!isObject(value)) return false;
  const ledger = value as Record<string, unknown>;
  return (
    typeof ledger.ackedParts === 'number' &&
    typeof ledger.ackedBytes === 'number' &&
    typeof ledger.complete === 'boolean' &&
    Array.isArray(ledger.parts) &&
    ledger.parts.every(
      (p: unknown) =>
        isObject(p) &&
        typeof (p as { number?: unknown }).number === 'number' &&
        typeof (p as { size?: unknown }).size === 'number' &&
        typeof (p as { last?: unknown }).last === 'boolean' &&
        ['sending', 'acknowledged', 'unknown'].includes((p as { state?: string }).state ?? ''),
    )
  );
}

function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
