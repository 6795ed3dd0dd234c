/**
 * How much memory this process may use: the container's limit from its cgroup when there is one,
 * else the machine's memory. Read once in main.ts and handed to loadConfig, which stays pure.
 */
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';

export interface SystemMemory {
  bytes: number;
  /** Where the figure came from: a cgroup v2 or v1 limit, the machine's memory, or a test's value. */
  source: 'cgroup v2' | 'cgroup v1' | 'machine' | 'assumed';
}

/** The share of it UPLOAD_MEMORY_BUDGET defaults to (docs/operations.md, "Sizing memory"). */
export const BUDGET_SHARE: Record<SystemMemory['source'], number> = {
  // A container with a limit is the relay's alone: half for upload bytes, half for Node itself
  // (heap, garbage not yet collected, sockets, the allocator's slack).
  'cgroup v2': 0.5,
  'cgroup v1': 0.5,
  // A machine without a limit is shared with whatever else runs on it.
  machine: 0.25,
  assumed: 0.25,
};

const CGROUP_V2 = '/sys/fs/cgroup/memory.max';
const CGROUP_V1 = '/sys/fs/cgroup/memory/memory.limit_in_bytes';

type ReadText = (path: string) => string | undefined;

const readText: ReadText = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/**
 * cgroup v2's `memory.max` ("max" when unlimited), else v1's `memory.limit_in_bytes` (a huge
 * number when unlimited); a limit above the machine's memory means none.
 */
export function detectSystemMemory(read: ReadText = readText, machine = totalmem()): SystemMemory {
  for (const [path, source] of [
    [CGROUP_V2, 'cgroup v2'],
    [CGROUP_V1, 'cgroup v1'],
  ] as const) {
    const text = read(path)?.trim();
    if (text === undefined || !/^\d+$/.test(text)) continue;
    const limit = Number(text);
    if (limit > 0 && limit < machine) return { bytes: limit, source };
  }
  return { bytes: machine, source: 'machine' };
}
