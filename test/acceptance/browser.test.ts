/**
 * The upload page in a real browser: playwright-core drives Debian's Chromium, picks a generated
 * 12 MiB file, uploads it, and the emulator's SHA-256 is the file's. (docs/demo-page.png is taken
 * mid-upload by upload-page.test.ts.)
 */
import type { Browser } from 'playwright-core';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { inspectVideo } from '../helpers/emulator';
import { useRelay } from '../helpers/fixture';
import { launchChromium } from '../helpers/browser';

const fixture = useRelay({
  env: { RELAY_API_TOKENS: 'browser-token-0123456789', LOG_LEVEL: 'warn' },
});
const emulator = () => fixture.emulator;
let browser: Browser;
beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

test('pick a file, see progress, get the videoId and the player link', async () => {
  const page = await browser.newPage({ viewport: { width: 900, height: 760 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(fixture.url);
  expect(await page.title()).toBe('Upload a video · api.video relay');
  const file = randomBytesOf(12 * MiB);
  await page.setInputFiles('#file', { name: 'beach-day.mp4', mimeType: 'video/mp4', buffer: file });
  await expect(page.textContent('#drop-text')).resolves.toContain('beach-day.mp4');
  await page.fill('#title', 'Beach day');
  await page.fill('#token', 'browser-token-0123456789');
  await page.uncheck('#resumable'); // one multipart request (the page's default is resumable)
  await page.click('#upload');
  await page.waitForSelector('#result:not([hidden])', { timeout: 30_000 });
  const videoId = (await page.textContent('#video-id'))!;
  expect(await page.textContent('#percent')).toBe('100 %');
  expect(await page.getAttribute('#player', 'href')).toBe(`https://embed.api.video/vod/${videoId}`);
  expect(inspectVideo(emulator(), videoId)).toMatchObject({
    completed: true,
    size: file.length,
    sha256: sha256(file),
    input: { title: 'Beach day' },
  });
  expect(errors).toEqual([]);
});

test('the resumable switch: tus-js-client in the browser, through /v1/uploads', async () => {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(fixture.url);
  const file = randomBytesOf(12 * MiB);
  await page.setInputFiles('#file', { name: 'resumable.mp4', mimeType: 'video/mp4', buffer: file });
  await page.fill('#token', 'browser-token-0123456789');
  await page.check('#resumable');
  await page.click('#upload');
  await page.waitForSelector('#result:not([hidden])', { timeout: 30_000 });
  const videoId = (await page.textContent('#video-id'))!;
  expect(inspectVideo(emulator(), videoId)).toMatchObject({
    completed: true,
    sha256: sha256(file),
    input: { title: 'resumable' },
  });
  expect(inspectVideo(emulator(), videoId).parts.length).toBe(3); // 5 MiB parts, relayed as tus chunks arrived
  expect(errors).toEqual([]);
});

test('a refused upload shows the problem, not a stack', async () => {
  const page = await browser.newPage();
  await page.goto(fixture.url);
  await page.evaluate('sessionStorage.clear()');
  await page.fill('#token', '');
  await page.setInputFiles('#file', {
    name: 'x.mp4',
    mimeType: 'video/mp4',
    buffer: Buffer.from('x'),
  });
  await page.click('#upload');
  await page.waitForSelector('#error:not([hidden])');
  expect(await page.textContent('#error')).toContain('unauthorized');
});
