import type { Server } from 'node:http';
import { getDefaultHighWaterMark, setDefaultHighWaterMark } from 'node:stream';
import { createHttpServer, listen } from '../../src/server';
import { readForm } from '../../src/upload/multipart-intake';
import { STREAM_HIGH_WATER_MARK } from '../../src/upload/stream-buffers';
import { RelayError } from '../../src/errors';

// Node 22 raised the default from 16 to 64 KiB, and the image runs Node 24. Raising it here makes
// this test fail on the machines' Node 20 too if a stream is left to the default.
const NODE_24_DEFAULT = 64 * 1024;
let saved: number;
beforeAll(() => {
  saved = getDefaultHighWaterMark(false);
  setDefaultHighWaterMark(false, NODE_24_DEFAULT);
});
afterAll(() => setDefaultHighWaterMark(false, saved));

test('a connection reads at most 16 KiB ahead per stream (request, parser, file), whatever Node defaults to', async () => {
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
    expect(await res.json()).toEqual({
      request: STREAM_HIGH_WATER_MARK,
      file: STREAM_HIGH_WATER_MARK,
      response: STREAM_HIGH_WATER_MARK,
    });
    expect(STREAM_HIGH_WATER_MARK).toBeLessThan(NODE_24_DEFAULT);
  } finally {
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  }
});
