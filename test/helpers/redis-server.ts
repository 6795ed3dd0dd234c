import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports';

/** A redis-server of the test's own, to kill, pause or restart without touching anyone else's. */
export interface OwnRedis {
  url: string;
  /** SIGSTOP: the connection stays open and nothing answers (a hung Redis). */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** SIGKILL, and waits for the process to be gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port (and, when persistent, with what it had written). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `persistent`: every write is on disk before Redis answers it (appendfsync always), so a killed
 * Redis comes back with exactly what it had acknowledged, as a production Redis with AOF does.
 */
export async function startOwnRedis(options: { persistent?: boolean } = {}): Promise<OwnRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'relay-redis-'));
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir,
    ...(options.persistent
      ? ['--appendonly', 'yes', '--appendfsync', 'always']
      : ['--appendonly', 'no']),
  ]; // prettier-ignore
  let child: ChildProcess = await launch(args);
  return {
    url: `redis://127.0.0.1:${port}`,
    pause: () => void child.kill('SIGSTOP'),
    resume: () => void child.kill('SIGCONT'),
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await once(child, 'exit');
    },
    restart: async () => {
      child = await launch(args);
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGCONT');
        child.kill('SIGKILL');
        await once(child, 'exit');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Starts redis-server and resolves once it accepts connections; rejects if it exits first. */
function launch(args: string[]): Promise<ChildProcess> {
  const child = spawn('redis-server', args);
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-server not ready:\n${log}`));
    }, 15_000);
    const look = (d: Buffer) => {
      log += d.toString();
      if (/Ready to accept connections/.test(log)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout!.on('data', look);
    child.stderr!.on('data', look);
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited:\n${log}`));
    });
  });
}
