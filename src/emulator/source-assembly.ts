import { createHash, type Hash } from 'node:crypto';
import { badRequest } from './problems';

export const MIN_PART = 5 * 1024 * 1024;
export const MAX_PART = 128 * 1024 * 1024;
export const MAX_WHOLE = 200 * 1024 * 1024;

/** How a request said which piece of the source it carries (from its Content-Range header). */
export type SourcePiece =
  | { kind: 'part'; number: number; total: number | null }
  | { kind: 'bytes'; from: number; to: number; total: number }
  | { kind: 'whole' };

export interface PartRecord {
  number: number;
  size: number;
  /** How many times this part number arrived (a retry makes it 2). */
  received: number;
  /** Its Content-Range as last received, e.g. "part 3/*" or "part 4/4". */
  label: string;
}

export interface SourceSummary {
  mode: SourcePiece['kind'] | null;
  completed: boolean;
  parts: PartRecord[];
  declaredTotal: number | null;
  receivedBytes: number;
  size: number | null;
  sha256: string | null;
}

/** Parses Content-Range as api.video accepts it; throws a 400 problem otherwise. */
export function parseContentRange(header: string | undefined): SourcePiece {
  if (header === undefined || header === '') return { kind: 'whole' };
  let m = /^part (\d+)\/(\d+|\*)$/.exec(header.trim());
  if (m) {
    const number = Number(m[1]);
    const total = m[2] === '*' ? null : Number(m[2]);
    if (number < 1 || (total !== null && (total < 1 || number > total))) {
      throw badRequest('invalid-content-range', `Invalid Content-Range "${header}"`);
    }
    return { kind: 'part', number, total };
  }
  m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header.trim());
  if (m) {
    const [from, to, total] = [Number(m[1]), Number(m[2]), Number(m[3])];
    if (from > to || to >= total) {
      throw badRequest('invalid-content-range', `Invalid Content-Range "${header}"`);
    }
    return { kind: 'bytes', from, to, total };
  }
  throw badRequest('invalid-content-range', `Invalid Content-Range "${header}"`);
}

/**
 * One video's source as it arrives. Keeps a running SHA-256 of the contiguous prefix and holds in
 * memory only the pieces that arrived ahead of a gap, so a 10 GiB upload costs a few parts of RAM.
 */
export class SourceAssembly {
  private mode: SourcePiece['kind'] | null = null;
  private readonly hash: Hash = createHash('sha256');
  private hashedBytes = 0;
  private nextPart = 1;
  private declaredTotal: number | null = null;
  private readonly parts = new Map<number, PartRecord & { sha256: string }>();
  /** Pieces ahead of a gap, keyed by part number (parts mode) or start offset (bytes mode). */
  private readonly ahead = new Map<number, Buffer>();
  private digest: string | null = null;

  get completed(): boolean {
    return this.digest !== null;
  }

  add(piece: SourcePiece, data: Buffer): void {
    if (this.completed) {
      throw badRequest(
        'video-source-already-uploaded',
        'The source of this video was already uploaded.',
      );
    }
    if (data.length === 0)
      throw badRequest('uploaded-file-empty', 'The uploaded file is empty.', 'file');
    if (this.mode !== null && this.mode !== piece.kind) {
      throw badRequest(
        'invalid-content-range',
        `This upload uses "${this.mode}" ranges; it cannot switch.`,
      );
    }
    if (piece.kind === 'whole') this.addWhole(data);
    else if (piece.kind === 'part') this.addPart(piece, data);
    else this.addBytes(piece, data);
    this.mode = piece.kind;
  }

  summary(): SourceSummary {
    const parts = [...this.parts.values()]
      .map(({ number, size, received, label }) => ({ number, size, received, label }))
      .sort((a, b) => a.number - b.number);
    return {
      mode: this.mode,
      completed: this.completed,
      parts,
      declaredTotal: this.declaredTotal,
      receivedBytes: this.hashedBytes + [...this.ahead.values()].reduce((n, b) => n + b.length, 0),
      size: this.completed ? this.hashedBytes : null,
      sha256: this.digest,
    };
  }

  receivedPartNumbers(): number[] {
    return [...this.parts.keys()].sort((a, b) => a - b);
  }

  private addWhole(data: Buffer): void {
    if (data.length > MAX_WHOLE) {
      throw badRequest(
        'uploaded-file-too-large',
        'A single-request upload is limited to 200 MiB.',
        'file',
      );
    }
    this.fold(data);
    this.finish();
  }

  private addPart(piece: { number: number; total: number | null }, data: Buffer): void {
    const { number, total } = piece;
    if (total !== null && this.declaredTotal !== null && total !== this.declaredTotal) {
      throw badRequest(
        'invalid-content-range',
        `The total was declared as ${this.declaredTotal}, not ${total}.`,
      );
    }
    const limit = total ?? this.declaredTotal;
    if (limit !== null && number > limit) {
      throw badRequest('invalid-content-range', `Part ${number} is past the last part (${limit}).`);
    }
    if (total !== null && this.highestPart() > total) {
      throw badRequest(
        'invalid-content-range',
        `Part ${this.highestPart()} was already received past ${total}.`,
      );
    }
    const isFinal = total !== null && number === total;
    checkPartSize(data.length, isFinal);
    const sha256 = sha(data);
    const earlier = this.parts.get(number);
    if (number < this.nextPart && earlier && earlier.sha256 !== sha256) {
      // Replacing bytes already folded into the hash would need the whole file in memory.
      throw badRequest(
        'emulator-part-already-assembled',
        `Part ${number} was already assembled with other bytes.`,
      );
    }
    const label = `part ${number}/${total ?? '*'}`;
    this.parts.set(number, {
      number,
      size: data.length,
      received: (earlier?.received ?? 0) + 1,
      label,
      sha256,
    });
    if (total !== null) this.declaredTotal = total;
    if (number >= this.nextPart) this.ahead.set(number, data);
    for (let next = this.ahead.get(this.nextPart); next; next = this.ahead.get(this.nextPart)) {
      this.ahead.delete(this.nextPart);
      this.fold(next);
      this.nextPart += 1;
    }
    if (this.declaredTotal !== null && this.nextPart > this.declaredTotal) this.finish();
  }

  private addBytes(piece: { from: number; to: number; total: number }, data: Buffer): void {
    const { from, to, total } = piece;
    if (to - from + 1 !== data.length) {
      throw badRequest(
        'invalid-content-range',
        `The range ${from}-${to} does not match ${data.length} bytes.`,
      );
    }
    if (this.declaredTotal !== null && total !== this.declaredTotal) {
      throw badRequest(
        'invalid-content-range',
        `The total was declared as ${this.declaredTotal}, not ${total}.`,
      );
    }
    checkPartSize(data.length, to === total - 1);
    if (from < this.hashedBytes) {
      throw badRequest(
        'emulator-range-already-assembled',
        `Bytes from ${from} were already assembled.`,
      );
    }
    this.declaredTotal = total;
    this.ahead.set(from, data);
    for (
      let next = this.ahead.get(this.hashedBytes);
      next;
      next = this.ahead.get(this.hashedBytes)
    ) {
      this.ahead.delete(this.hashedBytes);
      this.fold(next);
    }
    if (this.hashedBytes === total) this.finish();
  }

  private highestPart(): number {
    return Math.max(0, ...this.parts.keys());
  }

  private fold(data: Buffer): void {
    this.hash.update(data);
    this.hashedBytes += data.length;
  }

  private finish(): void {
    this.digest = this.hash.digest('hex');
    this.ahead.clear();
  }
}

function checkPartSize(size: number, isFinal: boolean): void {
  if (size > MAX_PART) {
    throw badRequest(
      'uploaded-part-too-large',
      `A part is limited to 128 MiB, got ${size} bytes.`,
      'file',
    );
  }
  if (!isFinal && size < MIN_PART) {
    throw badRequest(
      'uploaded-part-too-small',
      `A part other than the last must be at least 5 MiB, got ${size} bytes.`,
      'file',
    );
  }
}

function sha(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
