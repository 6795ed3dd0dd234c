/**
 * api.video's own browser uploader (`@api.video/video-uploader`, unmodified) in Chromium, pointed at
 * the relay with `apiHost`. The uploader always builds `https://{apiHost}/upload?token=…`, so the
 * relay sits behind a TLS front made here with a test CA that Chromium is told to trust. The page
 * comes from another origin, allowed by CORS_ORIGINS. Files are generated in the page and their
 * SHA-256 (computed there) is checked at the emulator.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../helpers/browser';
import { mintUploadToken } from '../helpers/upload-tokens';
import type { RunningEmulator } from '../../src/emulator/app';
import { makeTestPki, type TestPki } from '../helpers/certs';
import { inspectVideo, startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';

const BACKEND = 'backend-token-0123456789';
const UPLOADER = readFileSync(require.resolve('@api.video/video-uploader/dist/index.js'), 'utf8');
const PAGE = `<!doctype html><meta charset="utf-8"><title>uploader</title>
<script src="/video-uploader.js"></script>`;

let emulator: RunningEmulator;
let relay: TestRelay;
let pki: TestPki;
let front: TlsServer;
let pages: Server;
let browser: Browser;
let apiHost: string;
let pageUrl: string;

function listening(server: Server | TlsServer): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
}

/** SHA-256 of a certificate's public key, base64: what Chromium's SPKI allow-list takes. */
function spkiHash(pemFile: string): string {
  const der = execFileSync('sh', [
    '-c',
    `openssl x509 -in '${pemFile}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`,
  ]);
  return der.toString().trim();
}

beforeAll(async () => {
  emulator = await startTestEmulator();
  pages = createServer((req, res) => {
    if (req.url === '/video-uploader.js') {
      res.setHeader('Content-Type', 'text/javascript');
      return void res.end(UPLOADER);
    }
    res.setHeader('Content-Type', 'text/html');
    res.end(PAGE);
  });
  const pagePort = await listening(pages);
  pageUrl = `http://127.0.0.1:${pagePort}/`;
  relay = await startTestRelay(emulator, {
    env: {
      RELAY_API_TOKENS: BACKEND,
      CORS_ORIGINS: `http://127.0.0.1:${pagePort}`,
      LOG_LEVEL: 'warn',
    },
  });
  pki = makeTestPki();
  const relayPort = Number(new URL(relay.url).port);
  // The TLS front: terminates TLS with a certificate from the test CA (chain sent whole) and pipes
  // the bytes to the relay, as nginx or a load balancer would.
  front = createTlsServer(
    { key: pki.key, cert: pki.cert + readFileSync(pki.caFile, 'utf8') },
    (socket) => {
      const upstream = connect(relayPort, '127.0.0.1');
      socket.pipe(upstream).pipe(socket);
      const close = () => (socket.destroy(), upstream.destroy());
      socket.on('error', close);
      upstream.on('error', close);
    },
  );
  apiHost = `localhost:${await listening(front)}`;
  browser = await launchChromium([
    // Trust the test CA (and only it) for this run.
    `--ignore-certificate-errors-spki-list=${spkiHash(pki.caFile)}`,
  ]);
}, 60_000);
afterAll(async () => {
  await browser?.close();
  front?.close();
  pages?.close();
  await relay?.close();
  await emulator.close();
  pki?.remove();
});

const mint = async (body: object) => (await mintUploadToken(relay.url, BACKEND, body)).token;

/** In the page: `size` pseudo-random bytes as a File, and their SHA-256. */
const MAKE_FILE = `async (size) => {
  const bytes = new Uint8Array(size);
  let x = 2463534242;
  for (let i = 0; i < size; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; bytes[i] = x & 255; }
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  const sha = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
  return { file: new File([bytes], 'beach-day.mp4', { type: 'video/mp4' }), sha };
}`;

test('VideoUploader, 5 MiB chunks: the video has the file’s bytes and the token’s title', async () => {
  const token = await mint({ title: 'From the browser uploader', metadata: { userId: '42' } });
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(pageUrl);
  const result = await page.evaluate(
    async ({ token, apiHost, makeFile }) => {
      const { file, sha } = await (
        eval(makeFile) as (n: number) => Promise<{ file: File; sha: string }>
      )(12 * 1024 * 1024 + 321);
      const w = globalThis as unknown as {
        VideoUploader: new (o: object) => {
          upload(): Promise<{ videoId: string; title: string }>;
          onProgress(cb: (e: { uploadedBytes: number }) => void): void;
        };
      };
      const uploader = new w.VideoUploader({
        file,
        uploadToken: token,
        apiHost,
        chunkSize: 5 * 1024 * 1024,
        retries: 1,
      });
      let progress = 0;
      uploader.onProgress((e) => (progress = Math.max(progress, e.uploadedBytes)));
      const video = await uploader.upload();
      return { videoId: video.videoId, title: video.title, sha, progress, size: file.size };
    },
    { token, apiHost, makeFile: MAKE_FILE },
  );
  expect(errors).toEqual([]);
  expect(result.title).toBe('From the browser uploader');
  // The uploader counts the form's bytes (framing included) as uploaded.
  expect(result.progress).toBeGreaterThanOrEqual(result.size);
  const seen = inspectVideo(emulator, result.videoId);
  expect(seen).toMatchObject({ completed: true, size: result.size, sha256: result.sha });
  expect(seen.parts.map((p) => p.number)).toEqual([1, 2, 3]);
  expect(seen.input).toMatchObject({
    metadata: expect.arrayContaining([{ key: 'userId', value: '42' }]),
  });
  await page.close();
}, 60_000);

test('ProgressiveUploader: parts as the page has them, then the last', async () => {
  const token = await mint({ title: 'progressive' });
  const page = await browser.newPage();
  await page.goto(pageUrl);
  const result = await page.evaluate(
    async ({ token, apiHost, makeFile }) => {
      const { file, sha } = await (
        eval(makeFile) as (n: number) => Promise<{ file: File; sha: string }>
      )(11 * 1024 * 1024 + 5);
      const w = globalThis as unknown as {
        ProgressiveUploader: new (o: object) => {
          uploadPart(b: Blob): Promise<unknown>;
          uploadLastPart(b: Blob): Promise<{ videoId: string }>;
        };
      };
      const uploader = new w.ProgressiveUploader({ uploadToken: token, apiHost, retries: 1 });
      await uploader.uploadPart(file.slice(0, 6 * 1024 * 1024));
      const video = await uploader.uploadLastPart(file.slice(6 * 1024 * 1024));
      return { videoId: video.videoId, sha, size: file.size };
    },
    { token, apiHost, makeFile: MAKE_FILE },
  );
  const seen = inspectVideo(emulator, result.videoId);
  expect(seen).toMatchObject({ completed: true, size: result.size, sha256: result.sha });
  expect(seen.parts.map((p) => p.label)).toEqual(['part 1/*', 'part 2/2']);
  await page.close();
}, 60_000);
