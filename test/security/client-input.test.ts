/**
 * Issue #24, 500s and bare answers from client input: a chunk shorter than its `Content-Range` on
 * `POST /upload?token=` was a 500 with a stack trace in the log, and requests that Node's HTTP
 * layer handles before the app (no Host, an unknown Expect, CONNECT, a body that breaks while the
 * app reads it, a bad request pipelined behind a good one, a client that half-closes) got Node's
 * bare answer, no answer, an answer under another request's id, or cost a good request its upload.
 */
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { request as undici } from 'undici';
import type { RunningEmulator } from '../../src/emulator/app';
import type { UploadOutcome } from '../../src/engine/outcome';
import { inspectVideo, startTestEmulator } from '../helpers/emulator';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { multipartAround } from '../helpers/upload';
import { mintUploadToken } from '../helpers/upload-tokens';

const BACKEND = 'client-input-token-0123456789';
let emulator: RunningEmulator;
let relay: TestRelay;
const outcomes = new Map<string, UploadOutcome>();
const waiting = new Map<string, (outcome: UploadOutcome) => void>();
/** An upload's one outcome, recorded once the relay has cleaned up after it. */
const outcomeOf = (uploadId: string) =>
  new Promise<UploadOutcome>((resolve) => {
    const known = outcomes.get(uploadId);
    if (known) resolve(known);
    else waiting.set(uploadId, resolve);
  });
beforeAll(async () => {
  emulator = await startTestEmulator();
  relay = await startTestRelay(emulator, {
    env: { RELAY_API_TOKENS: BACKEND, LOG_LEVEL: 'info' },
    outcomeSinks: [
      {
        record: async (outcome) => {
          outcomes.set(outcome.uploadId, outcome);
          waiting.get(outcome.uploadId)?.(outcome);
        },
      },
    ],
  });
});
afterAll(async () => {
  await relay.close();
  await emulator.close();
});

const errorLines = () => relay.logs().filter((l) => (l.level as number) >= 50);

test('a chunk shorter than its Content-Range: 400 upload_chunk_invalid, no error line, and the token can retry', async () => {
  const { token } = await mintUploadToken(relay.url, BACKEND);
  const send = async (bytes: number) => {
    const data = Buffer.alloc(bytes, 7);
    const form = multipartAround(Readable.from([data]), bytes, { filename: 'clip.mp4' });
    const res = await undici(`${relay.url}/upload?token=${token}`, {
      method: 'POST',
      headers: {
        'content-type': form.contentType,
        'content-length': String(form.length),
        'content-range': 'bytes 0-99/100',
      },
      body: form.body,
    });
    return {
      status: res.statusCode,
      id: res.headers['x-request-id'],
      type: res.headers['content-type'],
      body: (await res.body.json()) as Record<string, unknown>,
    };
  };
  const before = errorLines().length;
  const short = await send(50);
  expect(short.status).toBe(400);
  expect(short.type).toMatch(/^application\/problem\+json/);
  expect(short.body).toMatchObject({ code: 'upload_chunk_invalid', requestId: short.id });
  expect(errorLines().length).toBe(before);
  expect(emulator.videos.live().length).toBe(0);
  // The single use was given back: the same chunk, whole, starts the upload.
  const whole = await send(100);
  expect(whole.status).toBe(201);
  expect(inspectVideo(emulator, whole.body.videoId as string)).toMatchObject({ completed: true });
});

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Every answer on the connection, in order, framed by Content-Length. */
function answersIn(text: string): Answer[] {
  const answers: Answer[] = [];
  let rest = text;
  while (rest.startsWith('HTTP/')) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const headers = Object.fromEntries(
      lines.map((l) => [
        l.slice(0, l.indexOf(':')).toLowerCase(),
        l.slice(l.indexOf(':') + 1).trim(),
      ]),
    );
    const length = Number(headers['content-length'] ?? 0);
    answers.push({
      status: Number(statusLine!.split(' ')[1]),
      headers,
      body: rest.slice(end + 4, end + 4 + length),
    });
    rest = rest.slice(end + 4 + length);
  }
  return answers;
}

/** Writes raw bytes (then half-closes, when asked) and collects everything until the relay closes. */
function exchange(text: string, halfClose: boolean): Promise<Answer[]> {
  const { port } = new URL(relay.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    socket.on('close', () => resolve(answersIn(received)));
    socket.on('error', reject);
    socket.on('connect', () => (halfClose ? socket.end(text) : socket.write(text)));
  });
}

function expectProblem(answer: Answer | undefined, status: number, code: string, id?: string) {
  expect(answer?.status).toBe(status);
  expect(answer?.headers['content-type']).toMatch(/^application\/problem\+json/);
  const requestId = answer?.headers['x-request-id'];
  expect(requestId).toBeTruthy();
  if (id) expect(requestId).toBe(id);
  expect(JSON.parse(answer!.body)).toMatchObject({ status, code, requestId });
}

const AUTH = `Authorization: Bearer ${BACKEND}\r\n`;

// [what, raw request, half-close after it, status, code, the id the answer must carry]
const REFUSED: Array<[string, string, boolean, number, string, string | undefined]> = [
  [
    'a Content-Length that is not a number',
    'POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
    false,
    400,
    'invalid_request',
    undefined,
  ],
  [
    'headers over 16 KiB',
    `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    false,
    431,
    'headers_too_large',
    undefined,
  ],
  [
    'a control character in a header',
    'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n',
    false,
    400,
    'invalid_request',
    undefined,
  ],
  ['a request line that is not one', 'GARBAGE\r\n\r\n', false, 400, 'invalid_request', undefined],
  [
    'an HTTP/1.1 request without Host',
    'GET /healthz HTTP/1.1\r\nX-Request-Id: no-host\r\n\r\n',
    false,
    400,
    'invalid_request',
    'no-host',
  ],
  [
    'an expectation other than 100-continue',
    'POST /v1/videos HTTP/1.1\r\nHost: x\r\nX-Request-Id: expect\r\nExpect: 200-ok\r\nContent-Length: 0\r\n\r\n',
    false,
    417,
    'expectation_failed',
    'expect',
  ],
  [
    'CONNECT, as to a proxy',
    'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nX-Request-Id: connect\r\n\r\n',
    false,
    404,
    'route_not_found',
    'connect',
  ],
  [
    'a chunk size that is not hex, in an upload the app is reading',
    `POST /v1/videos HTTP/1.1\r\nHost: x\r\n${AUTH}X-Request-Id: bad-chunk\r\nTransfer-Encoding: chunked\r\nContent-Type: video/mp4\r\n\r\n5\r\nhello\r\nzz\r\n`,
    false,
    400,
    'invalid_request',
    'bad-chunk',
  ],
  [
    'a body that ends before its Content-Length',
    `POST /v1/videos HTTP/1.1\r\nHost: x\r\n${AUTH}X-Request-Id: short-body\r\nContent-Type: video/mp4\r\nContent-Length: 100\r\n\r\nhello`,
    true,
    400,
    'invalid_request',
    'short-body',
  ],
];

test.each(REFUSED)(
  '%s: problem+json with its code and request id, never a bare answer or a 5xx',
  async (_what, text, halfClose, status, code, id) => {
    const before = errorLines().length;
    const live = emulator.videos.live().length;
    const answers = await exchange(text, halfClose);
    expect(answers).toHaveLength(1);
    expectProblem(answers[0], status, code, id);
    // A body that broke in an upload the app had begun: its container is gone once it is recorded.
    if (id && /chunk|body/.test(id)) expect(await outcomeOf(id)).toMatchObject({ kind: 'failed' });
    expect(errorLines().length).toBe(before);
    expect(emulator.videos.live().length).toBe(live);
  },
);

test('a bad request pipelined behind a complete upload: the upload is answered and kept, then the refusal', async () => {
  const upload =
    `POST /v1/videos HTTP/1.1\r\nHost: x\r\n${AUTH}X-Request-Id: pipelined-upload\r\n` +
    'Content-Type: video/mp4\r\nContent-Length: 5\r\n\r\nhello';
  const answers = await exchange(`${upload}GARBAGE\r\n\r\n`, true);
  expect(answers.map((a) => a.status)).toEqual([201, 400]);
  expect(answers[0]!.headers['x-request-id']).toBe('pipelined-upload');
  const videoId = (JSON.parse(answers[0]!.body) as { videoId: string }).videoId;
  expect(inspectVideo(emulator, videoId)).toMatchObject({ deleted: false, completed: true });
  expectProblem(answers[1], 400, 'invalid_request');
  expect(answers[1]!.headers['x-request-id']).not.toBe('pipelined-upload');
});

test('an HTTP/1.0 client that half-closes once its upload is sent still gets its answer', async () => {
  const answers = await exchange(
    `POST /v1/videos HTTP/1.0\r\n${AUTH}Content-Type: video/mp4\r\nContent-Length: 5\r\n\r\nhello`,
    true,
  );
  expect(answers.map((a) => a.status)).toEqual([201]);
  const videoId = (JSON.parse(answers[0]!.body) as { videoId: string }).videoId;
  expect(inspectVideo(emulator, videoId)).toMatchObject({ deleted: false, completed: true });
});
