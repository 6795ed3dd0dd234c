import { readdirSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { getDefaultHighWaterMark, setDefaultHighWaterMark } from 'node:stream';
import type { Writable } from 'node:stream';
import { createHttpServer, listen } from '../../src/http/server';
import { readForm } from '../../src/http/multipart-intake';
import { STREAM_HIGH_WATER_MARK, bodyStream, byteTransform } from '../../src/http/stream-buffers';
import { RelayError } from '../../src/kernel/errors';

// busboy's parser is made inside readForm: record it to read its buffer size.
const parsers: Writable[] = [];
jest.mock('busboy', () => {
  const actual = jest.requireActual<(config: unknown) => Writable>('busboy');
  return (config: unknown) => {
    const parser = actual(config);
    parsers.push(parser);
    return parser;
  };
});

// Node 22 raised the default from 16 to 64 KiB, and the image runs Node 24. Raising it here makes
// these tests fail on the machines' Node 20 too if a stream is left to the default.
const NODE_24_DEFAULT = 64 * 1024;
let saved: number;
beforeAll(() => {
  saved = getDefaultHighWaterMark(false);
  setDefaultHighWaterMark(false, NODE_24_DEFAULT);
});
afterAll(() => setDefaultHighWaterMark(false, saved));

test('a form reads at most 16 KiB ahead per stream (request, parser, file, response), whatever Node defaults to', async () => {
  let server: Server | undefined;
  try {
    server = createHttpServer(
      (req, res) => {
        readForm(
          req,
          { fields: 4, fieldSize: 1024 },
          {
            file: () => undefined,
            field: () => undefined,
            noFile: () => new RelayError('file_missing', 'no file'),
          },
        ).then(
          (form) => {
            const sizes = {
              request: req.readableHighWaterMark,
              parser: parsers.at(-1)?.writableHighWaterMark,
              file: form.stream.readableHighWaterMark,
              response: res.writableHighWaterMark,
            };
            form.stream.resume();
            void form.complete.then(() => res.end(JSON.stringify(sizes)));
          },
          (err: Error) => res.writeHead(500).end(err.message),
        );
      },
      { headersTimeoutMs: 5_000 },
    );
    const url = await listen(server, 0, '127.0.0.1');
    const form = new FormData();
    form.append('file', new Blob([Buffer.alloc(200 * 1024, 7)]), 'a.mp4');
    const res = await fetch(url, { method: 'POST', body: form });
    expect(res.status).toBe(200);
    const all = STREAM_HIGH_WATER_MARK;
    expect(await res.json()).toEqual({ request: all, parser: all, file: all, response: all });
    expect(STREAM_HIGH_WATER_MARK).toBeLessThan(NODE_24_DEFAULT);
  } finally {
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  }
});

test('the raw and tus bodies and the token route’s size limit buffer 16 KiB on each side', () => {
  const body = bodyStream();
  const limit = byteTransform((chunk, _enc, done) => done(null, chunk));
  for (const stream of [body, limit]) {
    expect(stream.readableHighWaterMark).toBe(STREAM_HIGH_WATER_MARK);
    expect(stream.writableHighWaterMark).toBe(STREAM_HIGH_WATER_MARK);
  }
});

test('no stream on the relay’s byte path is built with Node’s default buffers', () => {
  // The emulator is api.video's stand-in, not the relay: it keeps Node's defaults.
  const src = join(__dirname, '../../src');
  const files = readdirSync(src, { recursive: true, encoding: 'utf8' }).filter(
    (f) =>
      f.endsWith('.ts') && !f.startsWith('emulator') && f !== join('http', 'stream-buffers.ts'),
  );
  // Constructed (with or without `new`, from a namespace or not), made with `.from`, or extended.
  const STREAMS = 'PassThrough|Transform|Readable|Writable|Duplex';
  const built = new RegExp(
    `\\b(${STREAMS})\\(|\\b(Readable|Duplex)\\.from\\(|extends (stream\\.)?(${STREAMS})\\b`,
  );
  const offenders = files.filter((f) => built.test(readFileSync(join(src, f), 'utf8')));
  expect(files.length).toBeGreaterThan(20);
  expect(offenders).toEqual([]);
});
