/** UPLOAD_MEMORY_BUDGET: its default from the detected memory, and the cgroup reading behind it. */
import { ConfigError, loadConfig } from '../../src/kernel/config';
import { detectSystemMemory } from '../../src/kernel/system-memory';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const KEY = { APIVIDEO_API_KEY: 'k-123456' };

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig({ ...KEY, ...env });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('the default budget', () => {
  test.each([
    [
      'half of a container limit',
      { bytes: 2 * GiB, source: 'cgroup v2' },
      GiB,
      '50 % of the cgroup v2 limit (2048 MiB)',
    ],
    [
      'half of a cgroup v1 limit',
      { bytes: 1536 * MiB, source: 'cgroup v1' },
      768 * MiB,
      '50 % of the cgroup v1 limit (1536 MiB)',
    ],
    [
      'a quarter of a machine without a limit',
      { bytes: 16 * GiB, source: 'machine' },
      4 * GiB,
      "25 % of the machine's memory (16384 MiB)",
    ],
    [
      'whole MiB, rounded down',
      { bytes: 1000 * MiB + 3, source: 'cgroup v2' },
      500 * MiB,
      '50 % of the cgroup v2 limit (1000 MiB)',
    ],
    [
      'never below one part',
      { bytes: 20 * MiB, source: 'cgroup v2' },
      16 * MiB,
      '50 % of the cgroup v2 limit (20 MiB)',
    ],
  ] as const)('%s', (_name, system, budget, from) => {
    const config = loadConfig(KEY, [], system);
    expect(config.upload.memoryBudget).toBe(budget);
    expect(config.upload.memoryBudgetFrom).toBe(from);
  });

  test('without a detected figure (tests), a fixed assumption keeps loadConfig pure', () => {
    expect(loadConfig(KEY).upload).toMatchObject({
      memoryBudget: GiB,
      memoryBudgetFrom: '25 % of an assumed 4096 MiB',
    });
  });
});

test('UPLOAD_MEMORY_BUDGET overrides the default', () => {
  const config = loadConfig({ ...KEY, UPLOAD_MEMORY_BUDGET: '1GiB' }, [], {
    bytes: 64 * GiB,
    source: 'machine',
  });
  expect(config.upload).toMatchObject({
    memoryBudget: GiB,
    memoryBudgetFrom: 'UPLOAD_MEMORY_BUDGET',
  });
});

test.each([
  ['lots', 'UPLOAD_MEMORY_BUDGET: expected a size'],
  ['1MiB', 'UPLOAD_MEMORY_BUDGET: expected a size'],
  ['10MiB', 'UPLOAD_MEMORY_BUDGET: must be at least UPLOAD_PART_SIZE (16 MiB), got 10 MiB'],
])('UPLOAD_MEMORY_BUDGET=%s is refused', (value, message) => {
  expect(problems({ UPLOAD_MEMORY_BUDGET: value }).join('\n')).toContain(message);
});

test('UPLOAD_MAX_CONCURRENT is now a guard on connections: 1000 by default', () => {
  expect(loadConfig(KEY).limits.maxConcurrentUploads).toBe(1000);
});

describe('detectSystemMemory', () => {
  const files = (map: Record<string, string>) => (path: string) => map[path];
  const machine = 8 * GiB;

  test.each([
    [
      'cgroup v2 limit',
      { '/sys/fs/cgroup/memory.max': '536870912\n' },
      { bytes: 512 * MiB, source: 'cgroup v2' },
    ],
    [
      'cgroup v2 without a limit',
      { '/sys/fs/cgroup/memory.max': 'max\n' },
      { bytes: machine, source: 'machine' },
    ],
    [
      'cgroup v1 limit',
      { '/sys/fs/cgroup/memory/memory.limit_in_bytes': '1073741824\n' },
      { bytes: GiB, source: 'cgroup v1' },
    ],
    [
      'cgroup v1 "unlimited" (a huge number)',
      { '/sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712\n' },
      { bytes: machine, source: 'machine' },
    ],
    [
      'a limit above the machine is no limit',
      { '/sys/fs/cgroup/memory.max': String(16 * GiB) },
      { bytes: machine, source: 'machine' },
    ],
    ['no cgroup files', {}, { bytes: machine, source: 'machine' }],
    ['garbage', { '/sys/fs/cgroup/memory.max': 'lots' }, { bytes: machine, source: 'machine' }],
  ])('%s', (_name, map, expected) => {
    expect(detectSystemMemory(files(map), machine)).toEqual(expected);
  });

  test('reads the real files without throwing', () => {
    const found = detectSystemMemory();
    expect(found.bytes).toBeGreaterThan(0);
  });
});
