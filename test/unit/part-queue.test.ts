import { PartQueue } from '../../src/engine/part-queue';
import type { Part } from '../../src/engine/part-queue';

const part = (number: number): Part => ({ number, chunks: [], size: 0 });

function deferred() {
  let resolve!: (v: string) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<string>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

test('room() waits while `concurrency` parts are in flight, and frees up as they finish', async () => {
  const pending = new Map<number, ReturnType<typeof deferred>>();
  const queue = new PartQueue(
    2,
    (p) => {
      pending.set(p.number, deferred());
      return pending.get(p.number)!.promise;
    },
    () => undefined,
  );
  await queue.room();
  queue.send(part(1));
  await queue.room();
  queue.send(part(2));
  let roomy = false;
  const waiting = queue.room().then(() => (roomy = true));
  await new Promise((r) => setImmediate(r));
  expect(roomy).toBe(false);
  pending.get(1)!.resolve('ok');
  await waiting;
  expect(queue.size).toBe(1);
});

test('the last part goes only after every earlier part is acknowledged', async () => {
  const order: string[] = [];
  const first = deferred();
  const queue = new PartQueue(
    4,
    (p, isLast) => {
      order.push(`start ${p.number}${isLast ? ' last' : ''}`);
      return p.number === 1
        ? first.promise.then((v) => (order.push('ack 1'), v))
        : Promise.resolve('ack');
    },
    () => undefined,
  );
  queue.send(part(1));
  queue.send(part(2));
  const done = queue.finish(part(3));
  await new Promise((r) => setImmediate(r));
  expect(order).toEqual(['start 1', 'start 2']);
  first.resolve('ok');
  await done;
  expect(order).toEqual(['start 1', 'start 2', 'ack 1', 'start 3 last']);
});

test('a failure is reported once, stops room() and finish(), and leaves no unhandled rejection', async () => {
  const failures: unknown[] = [];
  const boom = new Error('boom');
  const queue = new PartQueue(
    2,
    (p) => (p.number === 1 ? Promise.reject(boom) : Promise.resolve('ok')),
    (e) => failures.push(e),
  );
  queue.send(part(1));
  queue.send(part(2));
  await expect(queue.room()).rejects.toBe(boom);
  await expect(queue.finish(part(3))).rejects.toBe(boom);
  expect(failures).toEqual([boom]);
});
