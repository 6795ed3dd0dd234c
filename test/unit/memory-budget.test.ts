/** UPLOAD_MEMORY_BUDGET's accounting: FIFO waits instead of refusals, aborts, and the invariants. */
import { MemoryBudget } from '../../src/engine/memory-budget';

/** Settles whatever is ready: a grant is a resolved promise, so a few turns of the queue see it. */
const turns = async (n = 5) => {
  for (let i = 0; i < n; i++) await Promise.resolve();
};

/** Tracks whether a promise has settled, without waiting for it. */
function track<T>(promise: Promise<T>) {
  const state: { settled: boolean; value?: T; error?: unknown } = { settled: false };
  promise.then(
    (value) => Object.assign(state, { settled: true, value }),
    (error: unknown) => Object.assign(state, { settled: true, error }),
  );
  return state;
}

test('grants at once while there is room, and counts it', async () => {
  const budget = new MemoryBudget(100);
  await expect(budget.reserve(60)).resolves.toBe(60);
  await expect(budget.reserve(40)).resolves.toBe(40);
  expect(budget.snapshot()).toEqual({
    budget: 100,
    reserved: 100,
    overhead: 0,
    held: 0,
    waiting: 0,
  });
  expect(budget.used).toBe(100);
});

test('a full budget makes requests wait (no refusal), then serves them in FIFO order', async () => {
  const budget = new MemoryBudget(100);
  await budget.reserve(100);
  const order: string[] = [];
  const a = budget.reserve(50).then(() => order.push('a'));
  const b = budget.reserve(10).then(() => order.push('b'));
  const c = budget.reserve(50).then(() => order.push('c'));
  await turns();
  expect(order).toEqual([]);
  expect(budget.waiting).toBe(3);
  budget.release(40); // 40 free: `a` (50) is at the head and blocks `b` (10) behind it
  await turns();
  expect(order).toEqual([]);
  budget.release(10); // 50 free: `a` is served and takes it all
  await a;
  await turns();
  expect(order).toEqual(['a']);
  budget.release(10);
  await b;
  expect(order).toEqual(['a', 'b']);
  budget.release(50);
  await c;
  expect(order).toEqual(['a', 'b', 'c']);
  expect(budget.reserved).toBe(100);
  expect(budget.waiting).toBe(0);
});

test('a request above the budget is capped to it rather than waiting forever', async () => {
  const budget = new MemoryBudget(100);
  await expect(budget.reserve(1000)).resolves.toBe(100);
});

test('atLeast: under pressure a request takes what is free, never less than its floor', async () => {
  const budget = new MemoryBudget(100);
  await budget.reserve(70);
  await expect(budget.reserve(50, { atLeast: 20 })).resolves.toBe(30);
  const waiting = track(budget.reserve(50, { atLeast: 20 }));
  await turns();
  expect(waiting.settled).toBe(false);
  budget.release(25); // 25 free >= 20
  await turns();
  expect(waiting).toMatchObject({ settled: true, value: 25 });
  expect(budget.reserved).toBe(100);
});

test('an aborted wait rejects with its reason, holds nothing, and lets the next one through', async () => {
  const budget = new MemoryBudget(100);
  await budget.reserve(90);
  const stop = new AbortController();
  const big = track(budget.reserve(50, { signal: stop.signal }));
  const small = track(budget.reserve(10));
  await turns();
  expect(small.settled).toBe(false); // FIFO: behind `big`
  const reason = new Error('client gone');
  stop.abort(reason);
  await turns();
  expect(big).toMatchObject({ settled: true, error: reason });
  expect(small).toMatchObject({ settled: true, value: 10 });
  expect(budget.snapshot()).toMatchObject({ reserved: 100, waiting: 0 });
});

test('an already aborted signal rejects without reserving', async () => {
  const budget = new MemoryBudget(100);
  const stop = new AbortController();
  stop.abort(new Error('gone'));
  await expect(budget.reserve(10, { signal: stop.signal })).rejects.toThrow('gone');
  expect(budget.reserved).toBe(0);
});

test('releasing more than is reserved is a bug, reported loudly', () => {
  const budget = new MemoryBudget(100);
  expect(() => budget.release(1)).toThrow(RangeError);
});

describe('accounts and reservations', () => {
  test('held bytes are counted per reservation, per account and in total; room cannot overflow', async () => {
    const budget = new MemoryBudget(100);
    const account = budget.account();
    const r = await account.reserve(40);
    r.hold(30);
    expect([r.held, r.room, account.held, budget.held]).toEqual([30, 10, 30, 30]);
    expect(() => r.hold(11)).toThrow(RangeError);
    r.shrinkToHeld(); // a last part: the 10 it will never use go back at once
    expect([account.reserved, budget.reserved]).toEqual([30, 30]);
    r.release();
    r.release(); // idempotent
    expect(budget.snapshot()).toEqual({
      budget: 100,
      reserved: 0,
      overhead: 0,
      held: 0,
      waiting: 0,
    });
  });

  test('closing an account releases whatever it still holds (a failed upload)', async () => {
    const budget = new MemoryBudget(100);
    const a = budget.account();
    (await a.reserve(30)).hold(30);
    (await a.reserve(30)).hold(5);
    a.close();
    expect(budget.snapshot()).toMatchObject({ reserved: 0, held: 0 });
  });

  test('`waiting` tells a wait for room from a wait for the client', async () => {
    const budget = new MemoryBudget(10);
    const first = budget.account();
    const r = await first.reserve(10);
    const second = budget.account();
    const pending = second.reserve(10);
    expect(second.waiting).toBe(true);
    expect(first.waiting).toBe(false);
    r.release();
    await pending;
    expect(second.waiting).toBe(false);
  });
});

describe("an upload's own cost (chargeUpload)", () => {
  test('counts against the room for parts, never waits, and gives it back once', async () => {
    const budget = new MemoryBudget(100, { perUpload: 10, keepForParts: 50 });
    const uncharge = budget.chargeUpload();
    expect(budget.snapshot()).toMatchObject({ reserved: 0, overhead: 10 });
    expect(budget.free).toBe(90);
    await expect(budget.reserve(50)).resolves.toBe(50);
    const waiter = track(budget.reserve(45)); // 40 free: waits
    await turns();
    expect(waiter.settled).toBe(false);
    uncharge(); // the upload's request ended: its cost goes back and serves the waiter
    await turns();
    expect(waiter.value).toBe(45);
    uncharge();
    expect(budget.snapshot()).toMatchObject({ reserved: 95, overhead: 0 });
  });

  test('an upload arriving while the budget is used up overdraws it, and parts wait until it is back', async () => {
    const budget = new MemoryBudget(100, { perUpload: 10, keepForParts: 50 });
    await budget.reserve(50);
    await budget.reserve(50);
    const uncharge = budget.chargeUpload(); // no room, yet the connection exists: counted anyway
    expect(budget.free).toBe(-10);
    budget.release(5);
    const part = track(budget.reserve(1));
    await turns();
    expect(part.settled).toBe(false); // parts + costs (105) still above the budget
    budget.release(11);
    await turns();
    expect(part.value).toBe(1);
    expect(budget.peak.atGrant).toBeLessThanOrEqual(100); // every grant left parts + costs within it
    uncharge();
  });

  test('costs stop counting at the budget less one largest part: no number of uploads starves a part', async () => {
    const budget = new MemoryBudget(100, { perUpload: 10, keepForParts: 50 });
    const uncharges = Array.from({ length: 1000 }, () => budget.chargeUpload());
    expect(budget.overhead).toBe(50);
    await expect(budget.reserve(50)).resolves.toBe(50); // a whole part still fits
    // A request above the largest part is capped to it (it could never fit beside the costs).
    const big = track(budget.reserve(80));
    await turns();
    expect(big.settled).toBe(false);
    budget.release(50);
    await turns();
    expect(big.value).toBe(50);
    for (const u of uncharges) u();
    expect(budget.overhead).toBe(0);
  });

  test('uploads beyond the cap are counted once earlier ones leave (a count, not a first-come share)', () => {
    const budget = new MemoryBudget(100, { perUpload: 10, keepForParts: 50 });
    expect(budget.uploadsCounted).toBe(5);
    const uncharges = Array.from({ length: 8 }, () => budget.chargeUpload());
    expect(budget.overhead).toBe(50);
    uncharges.slice(0, 3).forEach((u) => u()); // the first three leave: five remain, all counted
    expect(budget.overhead).toBe(50);
    uncharges[3]!();
    expect(budget.overhead).toBe(40);
    uncharges.slice(4).forEach((u) => u());
    expect(budget.snapshot()).toMatchObject({ overhead: 0 });
    expect(budget.used).toBe(0);
  });

  test('options that are not byte counts are refused, not turned into NaN figures', () => {
    expect(() => new MemoryBudget(100, { perUpload: Number.NaN })).toThrow(RangeError);
    expect(() => new MemoryBudget(100, { perUpload: -1 })).toThrow(RangeError);
    expect(() => new MemoryBudget(100, { keepForParts: 0 })).toThrow(RangeError);
    expect(() => new MemoryBudget(100, { perUpload: 10 })).toThrow(/keepForParts/);
    expect(() => new MemoryBudget(100, { keepForParts: Number.POSITIVE_INFINITY })).toThrow(
      RangeError,
    );
  });

  test('without perUpload the budget counts file bytes only', () => {
    const budget = new MemoryBudget(100);
    budget.chargeUpload();
    expect(budget.overhead).toBe(0);
    expect(budget.free).toBe(100);
  });
});
