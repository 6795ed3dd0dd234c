/**
 * The budgeted cutter: parts of adaptive sizes, each in room reserved before its first byte, and
 * the order that keeps many uploads on a small budget free of deadlock.
 */
import { BlockPool, DEFAULT_BLOCK_SIZE } from '../../src/engine/block-pool';
import { BudgetedCutter, type HeldPart } from '../../src/engine/budgeted-cutter';
import { MemoryBudget, STEP_BYTES } from '../../src/engine/memory-budget';
import { PartSizer, partRuleBroken } from '../../src/engine/part-size';

/** Small sizes keep the tables readable; the rules do not depend on them. */
const MIN = 10;
const MAX = 40;
const modes: Array<[string, () => BlockPool | undefined]> = [
  ['chunk lists', () => undefined],
  ['pooled blocks', () => new BlockPool(4, 64)],
];

const source = (n: number, salt = 0) =>
  Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + salt) % 251));

function cutter(budget: MemoryBudget, pool: BlockPool | undefined, extra = {}) {
  return new BudgetedCutter({
    account: budget.account(),
    sizer: new PartSizer({ min: MIN, max: MAX }),
    pool,
    minPart: MIN,
    ...extra,
  });
}

/** Feeds `data` in chunks of `chunk`, acknowledging each part at once; `clientMs` per chunk. */
async function cutAll(c: BudgetedCutter, data: Buffer, chunk: number, clientMs = 0) {
  const parts: Array<{ number: number; size: number; bytes: Buffer }> = [];
  const take = (p: HeldPart) => {
    parts.push({ number: p.number, size: p.size, bytes: Buffer.concat(p.chunks) });
    p.acknowledged();
  };
  for (let at = 0; at < data.length; at += chunk)
    await c.push(data.subarray(at, at + chunk), async (p) => take(p), undefined, clientMs);
  const last = c.finish();
  if (last) take(last);
  return parts;
}

describe.each(modes)('%s', (_name, makePool) => {
  test.each([
    // bytes, chunk, expected sizes (a slow client: one second per chunk keeps parts at MIN)
    [1, 1, [1]],
    [10, 3, [10]],
    [11, 3, [10, 1]],
    [30, 7, [10, 10, 10]],
    [31, 64, [10, 10, 10, 1]],
  ])('%i bytes in chunks of %i → parts %j', async (total, chunk, sizes) => {
    const data = source(total);
    const parts = await cutAll(cutter(new MemoryBudget(1000), makePool()), data, chunk, 1000);
    expect(parts.map((p) => p.size)).toEqual(sizes);
    expect(parts.map((p) => p.number)).toEqual(sizes.map((_, i) => i + 1));
    expect(Buffer.concat(parts.map((p) => p.bytes)).equals(data)).toBe(true);
  });

  test('the budget is back to zero once every part is acknowledged', async () => {
    const budget = new MemoryBudget(1000);
    await cutAll(cutter(budget, makePool()), source(95), 6);
    expect(budget.snapshot()).toMatchObject({ reserved: 0, held: 0 });
  });

  test('a full part is handed on only once a further byte arrives; the last is labelled by finish()', async () => {
    const c = cutter(new MemoryBudget(1000), makePool());
    const released: HeldPart[] = [];
    await c.push(source(MIN), async (p) => void released.push(p));
    expect(released).toEqual([]);
    await c.push(source(1), async (p) => void released.push(p));
    expect(released.map((p) => p.size)).toEqual([MIN]);
    expect(c.finish()?.size).toBe(1);
    expect(c.finish()).toBeUndefined();
  });

  test('no bytes, no part', () => {
    expect(cutter(new MemoryBudget(1000), makePool()).finish()).toBeUndefined();
  });

  test('maxBytes: a short upload reserves only what it can hold', async () => {
    const budget = new MemoryBudget(1000);
    const c = cutter(budget, makePool(), { maxBytes: 4 });
    await c.push(source(3), async () => undefined);
    expect(budget.reserved).toBe(4);
    const last = c.finish()!;
    expect(budget.reserved).toBe(3); // the last part's room shrinks to its size
    last.acknowledged();
    expect(budget.reserved).toBe(0);
  });

  test('more bytes than maxBytes said is refused rather than sending a part under the minimum', async () => {
    const c = cutter(new MemoryBudget(1000), makePool(), { maxBytes: 4 });
    await expect(c.push(source(6), async () => undefined)).rejects.toThrow(RangeError);
  });

  test('discarding parts and closing the cutter gives every byte of room back', async () => {
    const budget = new MemoryBudget(1000);
    const c = cutter(budget, makePool());
    const released: HeldPart[] = [];
    await c.push(source(25), async (p) => void released.push(p));
    expect(budget.held).toBe(25);
    released.forEach((p) => p.discard());
    c.close();
    expect(budget.snapshot()).toMatchObject({ reserved: 0, held: 0 });
  });
});

test('sizes grow with a fast client and stay within [min, max]; every part keeps the rules', async () => {
  const MiB = 1024 * 1024;
  const c = new BudgetedCutter({
    account: new MemoryBudget(1024 * MiB).account(),
    sizer: new PartSizer({ max: 16 * MiB }),
  });
  const sizes: number[] = [];
  const chunk = Buffer.alloc(256 * 1024, 1);
  for (let sent = 0; sent < 60 * MiB + 12345; sent += chunk.length) {
    const piece = chunk.subarray(0, Math.min(chunk.length, 60 * MiB + 12345 - sent));
    await c.push(piece, async (p) => (sizes.push(p.size), p.acknowledged()), undefined, 0);
  }
  sizes.push(c.finish()!.size);
  expect(sizes.slice(0, 3)).toEqual([5 * MiB, 10 * MiB, 16 * MiB]);
  expect(partRuleBroken(sizes, 16 * MiB)).toBeUndefined();
  expect(sizes.reduce((a, b) => a + b)).toBe(60 * MiB + 12345);
});

test('pooled blocks are reused once acknowledged: a long upload allocates a part and a block or so', async () => {
  const pool = new BlockPool(4, 1000);
  const c = cutter(new MemoryBudget(1000), pool);
  await cutAll(c, source(400), 3, 1000);
  // One part of 10 bytes in flight at a time here: 3 blocks, plus one for the part being filled.
  expect(pool.allocated).toBeLessThanOrEqual(6);
});

/**
 * Many uploads on a budget with fewer part slots than uploads: each sends its parts through its
 * own queue (one part in flight, acknowledged a tick later), with chunks that straddle part
 * boundaries. The invariants are checked after every step, through the budget's own accounting.
 */
describe('many uploads, few part slots', () => {
  test.each([
    ['3 slots, 12 uploads', 30, 12],
    ['1 slot, 5 uploads', 10, 5],
  ])('%s: all finish byte-exact, the budget is never exceeded', async (_name, budgetBytes, n) => {
    const budget = new MemoryBudget(budgetBytes);
    let maxReserved = 0;
    let maxHeld = 0;
    const check = () => {
      const s = budget.snapshot();
      expect(s.held).toBeLessThanOrEqual(s.reserved);
      expect(s.reserved).toBeLessThanOrEqual(s.budget);
      maxReserved = Math.max(maxReserved, s.reserved);
      maxHeld = Math.max(maxHeld, s.held);
    };
    const upload = async (i: number) => {
      const data = source(37 + i * 5, i);
      const c = cutter(budget, i % 2 ? new BlockPool(4, 64) : undefined);
      const got: Buffer[] = [];
      let inFlight: Promise<void> = Promise.resolve();
      // One part in flight: the next waits for the previous acknowledgement (like PartQueue).
      const release = async (p: HeldPart) => {
        await inFlight;
        check();
        inFlight = new Promise<void>((resolve) =>
          setImmediate(() => {
            got.push(Buffer.concat(p.chunks));
            p.acknowledged();
            check();
            resolve();
          }),
        );
      };
      for (let at = 0; at < data.length; at += 7) {
        await c.push(data.subarray(at, at + 7), release, undefined, 1000);
        check();
      }
      await inFlight;
      const last = c.finish()!;
      got.push(Buffer.concat(last.chunks));
      last.acknowledged();
      check();
      expect(Buffer.concat(got).equals(data)).toBe(true);
    };
    await Promise.all(Array.from({ length: n }, (_, i) => upload(i)));
    expect(maxReserved).toBe(budgetBytes); // the budget was the limit: uploads did wait
    expect(maxHeld).toBeGreaterThan(0);
    expect(budget.snapshot()).toMatchObject({ reserved: 0, held: 0, waiting: 0 });
  });

  test('a full budget holds a new upload back (backpressure, no error) until a part is acknowledged', async () => {
    const budget = new MemoryBudget(MIN);
    const first = cutter(budget, undefined);
    await first.push(source(5), async () => undefined);
    const second = cutter(budget, undefined);
    let pushed = false;
    const pending = second.push(source(5), async () => undefined).then(() => (pushed = true));
    await new Promise((r) => setImmediate(r));
    expect(pushed).toBe(false);
    expect(second.waitingForRoom).toBe(true);
    expect(budget.waiting).toBe(1);
    first.finish()!.acknowledged();
    await pending;
    expect(pushed).toBe(true);
    expect(second.waitingForRoom).toBe(false);
  });

  test('a wait for room ends when the upload is aborted, and nothing is left reserved', async () => {
    const budget = new MemoryBudget(MIN);
    const first = cutter(budget, undefined);
    await first.push(source(5), async () => undefined);
    const second = cutter(budget, undefined);
    const stop = new AbortController();
    const pending = second.push(source(5), async () => undefined, stop.signal);
    stop.abort(new Error('client gone'));
    await expect(pending).rejects.toThrow('client gone');
    second.close();
    expect(budget.waiting).toBe(0);
    expect(budget.reserved).toBe(MIN);
  });
});

test('big parts (a fast client) use the large blocks, 5 MiB parts the small ones', async () => {
  const MiB = 1024 * 1024;
  const small = new BlockPool(DEFAULT_BLOCK_SIZE, 0);
  const large = new BlockPool(MiB, 0);
  const c = new BudgetedCutter({
    account: new MemoryBudget(1024 * MiB).account(),
    sizer: new PartSizer({ max: 16 * MiB }),
    pool: small,
    largePool: large,
  });
  const blockSizes: number[][] = [];
  const chunk = Buffer.alloc(64 * 1024, 3);
  for (let sent = 0; sent < 16 * MiB; sent += chunk.length)
    await c.push(
      chunk,
      async (p) => (blockSizes.push(p.chunks.map((b) => b.length)), p.acknowledged()),
    );
  expect(blockSizes[0]).toEqual(Array((5 * MiB) / DEFAULT_BLOCK_SIZE).fill(DEFAULT_BLOCK_SIZE));
  expect(blockSizes[1]).toEqual(Array(10).fill(MiB)); // 10 MiB
});

test('every block of an acknowledged part goes back to its pool, a part ending mid-block too', async () => {
  const MiB = 1024 * 1024;
  const small = new BlockPool(DEFAULT_BLOCK_SIZE, 64 * MiB);
  const large = new BlockPool(MiB, 64 * MiB);
  const budget = new MemoryBudget(1024 * MiB);
  const c = new BudgetedCutter({
    account: budget.account(),
    sizer: new PartSizer({ max: 16 * MiB }),
    pool: small,
    largePool: large,
  });
  // Odd-sized chunks, so parts and the last one end inside a block.
  const chunk = Buffer.alloc(100_003, 7);
  const parts: HeldPart[] = [];
  for (let sent = 0; sent < 40 * MiB; sent += chunk.length)
    await c.push(chunk, async (p) => void parts.push(p));
  parts.push(c.finish()!);
  expect(parts.length).toBeGreaterThan(2);
  expect(budget.held).toBe(budget.reserved);
  for (const p of parts) p.acknowledged();
  expect(small.freeBlocks).toBe(small.allocated);
  expect(large.freeBlocks).toBe(large.allocated);
  expect(small.allocated + large.allocated).toBeGreaterThan(0);
  expect(budget.reserved).toBe(0);
  expect(budget.held).toBe(0);
});

describe('room for slow clients', () => {
  const KiB = 1024;
  /** Pushes `parts` parts of 1 MiB at 64 KiB a second (below the budget's least rate). */
  async function slowClient(c: BudgetedCutter, parts: number) {
    const sent: number[] = [];
    for (let i = 0; i < (parts * 1024) / 64; i++)
      await c.push(
        source(64 * KiB, i),
        async (p) => void (sent.push(p.size), p.acknowledged()),
        undefined,
        1000,
      );
    const last = c.finish();
    if (last) {
      sent.push(last.size);
      last.acknowledged();
    }
    return sent;
  }

  test('steps while the pool has room; then the rest of a part, so slow clients never block one another for good', async () => {
    // One step's pool, and no limit on waits: only the fallback to whole parts lets both finish.
    const budget = new MemoryBudget(3 * 1024 * KiB, { stepPool: STEP_BYTES, minRate: 1024 * KiB });
    const make = () =>
      new BudgetedCutter({
        account: budget.account(),
        sizer: new PartSizer({ min: 1024 * KiB, max: 1024 * KiB }),
        minPart: 1024 * KiB,
      });
    const [a, b] = await Promise.all([slowClient(make(), 2), slowClient(make(), 2)]);
    expect([a, b]).toEqual([
      [1024 * KiB, 1024 * KiB],
      [1024 * KiB, 1024 * KiB],
    ]);
    expect(budget.peak.stepped).toBeLessThanOrEqual(STEP_BYTES);
    expect(budget.snapshot()).toMatchObject({ reserved: 0, held: 0, waiting: 0 });
  });
});
