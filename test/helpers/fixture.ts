/**
 * "An emulator (and a relay on it) for this test file": started in beforeAll, closed in afterAll,
 * pass or fail. Call at the top of a file (or a describe) and read what it started through getters.
 * After each test the emulator's faults are cleared and its part gate opened, so one test's
 * injected trouble never leaks into the next.
 */
import type { RunningEmulator } from '../../src/emulator/app';
import { startTestEmulator } from './emulator';
import { startTestRelay, type TestRelay, type TestRelayOptions } from './relay';

export interface EmulatorFixture {
  readonly emulator: RunningEmulator;
}

export interface RelayFixture extends EmulatorFixture {
  readonly relay: TestRelay;
  /** The relay's base URL. */
  readonly url: string;
  /**
   * Another relay on the same emulator, started in beforeAll and closed with the file's: for files
   * that compare settings side by side. Call at the top level (or in a describe), not in a test.
   */
  alsoRelay(options: TestRelayOptions): () => TestRelay;
  /** Another relay for one test, closed when `use` settles, pass or fail. */
  withRelay<T>(options: TestRelayOptions, use: (relay: TestRelay) => Promise<T>): Promise<T>;
}

function started<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} is not started: read it inside a test`);
  return value;
}

export function useEmulator(options: { tokenTtlSeconds?: number } = {}): EmulatorFixture {
  let emulator: RunningEmulator | undefined;
  beforeAll(async () => {
    emulator = await startTestEmulator(options);
  });
  afterEach(() => {
    emulator?.faults.clear();
    emulator?.gate.open();
  });
  afterAll(async () => {
    await emulator?.close();
  });
  return {
    get emulator() {
      return started(emulator, 'the emulator');
    },
  };
}

export function useRelay(options: TestRelayOptions = {}): RelayFixture {
  let relay: TestRelay | undefined;
  const others: TestRelay[] = [];
  // Registered before the emulator's own hooks, so the relays close first (jest runs afterAll
  // hooks in the order they were declared).
  afterAll(async () => {
    await Promise.all([relay, ...others].map((r) => r?.close()));
  });
  const base = useEmulator();
  beforeAll(async () => {
    relay = await startTestRelay(base.emulator, options);
  });
  return {
    get emulator() {
      return base.emulator;
    },
    get relay() {
      return started(relay, 'the relay');
    },
    get url() {
      return started(relay, 'the relay').url;
    },
    alsoRelay(more) {
      let other: TestRelay | undefined;
      beforeAll(async () => {
        other = await startTestRelay(base.emulator, more);
        others.push(other);
      });
      return () => started(other, 'this relay');
    },
    async withRelay(more, use) {
      const other = await startTestRelay(base.emulator, more);
      try {
        return await use(other);
      } finally {
        await other.close();
      }
    },
  };
}
