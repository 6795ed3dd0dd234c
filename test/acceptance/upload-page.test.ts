/**
 * The upload page as a real uploader, in Chromium (playwright-core), against the relay as users
 * start it: `node dist/main.js` with no key, so on its built-in emulator. Uploads are throttled by
 * the emulator's delay injection on one part, and the tests act when the emulator has seen that
 * part (an event), not after a timer. Every upload is checked by SHA-256 at the emulator.
 * Needs /usr/bin/chromium (`apt-get install -y chromium`).
 */
import { join } from 'node:path';
import type { Browser, CDPSession, Page } from 'playwright-core';
import { launchChromium } from '../helpers/browser';
import { request } from 'undici';
import { MiB, tempFile, type TempFile } from '../helpers/data';
import { startRelayProcess, type RelayProcess } from '../helpers/process';

let relay: RelayProcess;
let emulatorUrl: string;
let browser: Browser;
let file: TempFile;
const TOKEN = 'upload-page-token-0123456789';

beforeAll(async () => {
  relay = await startRelayProcess({ UPLOAD_PART_SIZE: '5MiB', RELAY_API_TOKENS: TOKEN });
  const line = relay
    .output()
    .split('\n')
    .find((l) => l.includes('built-in api.video emulator'))!;
  emulatorUrl = (JSON.parse(line) as { emulator: string }).emulator;
  browser = await launchChromium([
    // "Another machine": a name that is not localhost, resolved to the relay's loopback address.
    '--host-resolver-rules=MAP relay.example 127.0.0.1',
  ]);
  // 15 MiB: three 5 MiB parts at api.video, two tus PATCHes of 8 MiB from the page.
  file = await tempFile(15 * MiB + 11, 'beach-day.mp4');
});
afterAll(async () => {
  await browser?.close();
  await relay?.stop();
  await file?.remove();
});
afterEach(async () => {
  await emulator('DELETE', '/_emulator/faults');
});

async function emulator(method: string, path: string, body?: unknown): Promise<unknown> {
  const answer = await request(emulatorUrl + path, {
    method: method as 'GET',
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await answer.body.text();
  return text ? (JSON.parse(text) as unknown) : undefined;
}

interface SeenVideo {
  videoId: string;
  completed: boolean;
  deleted: boolean;
  size: number;
  sha256: string;
}
const videos = async () => (await emulator('GET', '/_emulator/videos')) as SeenVideo[];
const video = async (id: string) => (await emulator('GET', `/_emulator/videos/${id}`)) as SeenVideo;

/** Resolves when `check` holds; polls, since the emulator is in another process. */
async function until<T>(check: () => Promise<T | undefined | false>, what: string): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The emulator has begun receiving part `n` of some upload since `since` parts were logged. */
async function partSeen(n: number, since: number): Promise<string> {
  return until(async () => {
    const { partLog } = (await emulator('GET', '/_emulator/stats')) as {
      partLog: Array<{ videoId: string; contentRange: string }>;
    };
    return partLog.slice(since).find((p) => p.contentRange.startsWith(`part ${n}/`))?.videoId;
  }, `part ${n} at the emulator`);
}
const partsLogged = async () =>
  ((await emulator('GET', '/_emulator/stats')) as { partLog: unknown[] }).partLog.length;

async function openPage(url = relay.url): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(url);
  await page.fill('#token', TOKEN);
  return { page, errors };
}

const status = (page: Page) => page.textContent('#status');
/**
 * Waits until element `id`'s text matches `pattern` (run in the page, where the DOM is) and
 * resolves with that text: read later, it may already have moved on.
 */
async function textMatches(page: Page, id: string, pattern: RegExp): Promise<string> {
  const handle = await page.waitForFunction(
    ([id, source]) => {
      const text = (globalThis as unknown as PageGlobals).document.getElementById(id).textContent;
      return new RegExp(source).test(text) && text;
    },
    [id, pattern.source] as const,
  );
  return (await handle.jsonValue()) as string;
}
const statusStartsWith = (page: Page, prefix: string) =>
  textMatches(page, 'status', new RegExp('^' + prefix));
interface PageGlobals {
  document: { getElementById(id: string): { textContent: string } };
}

/** A client link of `bytesPerSecond` upstream, as Chromium's DevTools emulate it; or none. */
const sessions = new WeakMap<Page, CDPSession>();
async function throttle(page: Page, bytesPerSecond: number, offline = false): Promise<void> {
  let cdp = sessions.get(page);
  if (!cdp) {
    cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    sessions.set(page, cdp);
  }
  await cdp.send('Network.emulateNetworkConditions', {
    offline,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: bytesPerSecond,
  });
}

test('over plain HTTP on a name that is not localhost, the page is styled and its scripts run', async () => {
  const port = new URL(relay.url).port;
  const failed: string[] = [];
  const page = await browser.newPage();
  try {
    page.on('requestfailed', (r) => failed.push(r.url()));
    await page.goto(`http://relay.example:${port}/`);
    // style.css applied: the card's rounded corners come from it.
    expect(
      await page.evaluate("getComputedStyle(document.querySelector('.card')).borderRadius"),
    ).toBe('16px');
    // app.js ran (it asked /v1/info) and tus.min.js loaded.
    await page.waitForSelector('#upstream-note:not([hidden])');
    expect(await page.evaluate('typeof tus.Upload')).toBe('function');
    expect(failed).toEqual([]);
  } finally {
    await page.close();
  }
});

test('the relay says it is on the emulator; the page shows it, and a reload mid-upload resumes where the relay is', async () => {
  const { page, errors } = await openPage();
  try {
    await page.waitForSelector('#upstream-note:not([hidden])');
    expect(await page.textContent('#upstream-note')).toContain('built-in api.video emulator');
    const before = (await videos()).length;
    const logged = await partsLogged();
    // A link of 4 MiB/s, and part 2 answered 3 s late: the upload cannot finish before the reload.
    await throttle(page, 4 * MiB);
    await emulator('POST', '/_emulator/faults', { target: 'part', part: 2, delayMs: 3000 });
    await page.setInputFiles('#file', file.path);
    await page.click('#upload');

    // Mid-upload: an accessible progress bar, a live status, speed and time left.
    await textMatches(page, 'speed', /^\d+\.\d MiB\/s$/);
    await textMatches(page, 'eta', /^\d+ s left$/);
    expect(await page.getAttribute('#status', 'aria-live')).toBe('polite');
    expect(await page.textContent('#status')).toBe('Uploading…');
    // The committed screenshot is refreshed on request only: a test run leaves the tree clean.
    const shot = await page.screenshot(
      process.env.UPDATE_SCREENSHOT ? { path: join(__dirname, '../../docs/demo-page.png') } : {},
    );
    expect(shot.length).toBeGreaterThan(10_000);
    const videoId = await partSeen(2, logged);
    const bar = page.locator('[role="progressbar"]');
    const now = Number(await bar.getAttribute('aria-valuenow'));
    expect(now).toBeGreaterThan(0);
    expect(now).toBeLessThanOrEqual(100);

    await page.reload();
    await page.setInputFiles('#file', file.path);
    await page.waitForSelector('#resume-note:not([hidden])');
    expect(await page.textContent('#upload')).toBe('Continue upload');
    await page.click('#upload');
    // Said until bytes move again, then "Uploading…": the text as it matched.
    const resuming = await statusStartsWith(page, 'Resuming: the relay already has');
    const resumedAt = Number(/\((\d+) %\)/.exec(resuming)![1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThan(100);

    await page.waitForSelector('#result:not([hidden])', { timeout: 30_000 });
    expect(await page.textContent('#video-id')).toBe(videoId);
    expect(await page.getAttribute('[role="progressbar"]', 'aria-valuenow')).toBe('100');
    // One container, the bytes exactly the file's.
    expect((await videos()).length).toBe(before + 1);
    expect(await video(videoId)).toMatchObject({
      completed: true,
      size: file.size,
      sha256: file.sha256,
    });
    expect(errors).toEqual([]);
  } finally {
    await page.close();
  }
});

test('pause and resume, then "finishing" while the last part goes out', async () => {
  const { page, errors } = await openPage();
  try {
    const logged = await partsLogged();
    // At 4 MiB/s the page still has 10 MiB to send when part 1 reaches api.video: the pause lands
    // mid-upload. Part 3, the last, is answered late: the "finishing" window.
    await throttle(page, 4 * MiB);
    await emulator('POST', '/_emulator/faults', { target: 'part', part: 3, delayMs: 2000 });
    await page.setInputFiles('#file', file.path);
    await page.click('#upload');
    const videoId = await partSeen(1, logged);
    await page.click('#pause');
    await statusStartsWith(page, 'Paused at');
    expect(await page.textContent('#pause')).toBe('Resume');
    expect(await page.isHidden('#result')).toBe(true);

    await page.click('#pause');
    // All bytes sent, api.video still receiving part 3: the page says so and shows no result yet.
    await statusStartsWith(page, 'Finishing');
    expect(await page.getAttribute('[role="progressbar"]', 'aria-valuenow')).toBe('100');
    expect(await page.isHidden('#result')).toBe(true);
    await page.waitForSelector('#result:not([hidden])', { timeout: 30_000 });
    expect(await page.textContent('#video-id')).toBe(videoId);
    expect(await video(videoId)).toMatchObject({ completed: true, sha256: file.sha256 });
    expect(errors).toEqual([]);
  } finally {
    await page.close();
  }
});

test('a dropped network: the page says so, retries, and continues the same upload', async () => {
  const { page, errors } = await openPage();
  try {
    const before = (await videos()).length;
    const logged = await partsLogged();
    await throttle(page, 4 * MiB);
    await page.setInputFiles('#file', file.path);
    await page.click('#upload');
    const videoId = await partSeen(1, logged);
    await throttle(page, 4 * MiB, true);
    await statusStartsWith(page, 'The connection dropped: trying again');
    await throttle(page, 4 * MiB);
    await page.waitForSelector('#result:not([hidden])', { timeout: 30_000 });
    expect(await page.textContent('#video-id')).toBe(videoId);
    expect((await videos()).length).toBe(before + 1);
    expect(await video(videoId)).toMatchObject({ completed: true, sha256: file.sha256 });
    expect(errors.filter((e) => !e.includes('net::ERR_INTERNET_DISCONNECTED'))).toEqual([]);
  } finally {
    await page.close();
  }
});

test('cancel: the page stops, and the relay deletes the container it made', async () => {
  const { page } = await openPage();
  try {
    const logged = await partsLogged();
    // At 4 MiB/s the page is still sending (10 MiB to go) when part 1 reaches api.video: a
    // finished upload cannot be terminated, an unfinished one can.
    await throttle(page, 4 * MiB);
    await page.setInputFiles('#file', file.path);
    await page.click('#upload');
    const videoId = await partSeen(1, logged);
    await page.click('#cancel');
    await statusStartsWith(page, 'Cancelled.');
    expect(await status(page)).toBe('Cancelled. The relay deleted what it had received.');
    await until(async () => (await video(videoId)).deleted, 'the container deleted');
    expect(await video(videoId)).toMatchObject({ completed: false, deleted: true });
    expect(await page.isHidden('#result')).toBe(true);
    expect(await page.isDisabled('#upload')).toBe(false);
  } finally {
    await page.close();
  }
});

test.each([
  ['resumable', true],
  ['one request', false],
])(
  'a refusal (%s) reads as the problem: title and detail, not a dump',
  async (_mode, resumable) => {
    const { page } = await openPage();
    try {
      await page.fill('#token', 'not-the-token-0123456789');
      await page.setChecked('#resumable', resumable);
      await page.setInputFiles('#file', file.path);
      await page.click('#upload');
      await page.waitForSelector('#error:not([hidden])');
      expect(await page.textContent('#error-title')).toBe('Missing or invalid credentials');
      expect(await page.textContent('#error-detail')).not.toBe('');
      expect(await page.textContent('#error-meta')).toMatch(/^unauthorized · request \S+$/);
      const shown = (await page.textContent('#error'))!;
      for (const raw of ['{', '"status"', 'tus:', 'response text', 'originated from'])
        expect(shown).not.toContain(raw);
    } finally {
      await page.close();
    }
  },
);
