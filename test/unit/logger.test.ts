import { Writable } from 'node:stream';
import { createLogger, scrubSecrets } from '../../src/kernel/logger';

function capture(secrets: string[]) {
  let out = '';
  const destination = new Writable({
    write(chunk: Buffer, _e, done) {
      out += chunk.toString();
      done();
    },
  });
  return { logger: createLogger({ level: 'trace', secrets, destination }), text: () => out };
}

const KEY = 'secret-api-key-123';

test('credential headers and the configured key are redacted by path', () => {
  const { logger, text } = capture([KEY]);
  logger.info({
    req: {
      headers: {
        authorization: 'Basic abc',
        cookie: 'sid=1',
        'proxy-authorization': 'Basic xyz',
        accept: '*/*',
      },
    },
    config: { apivideo: { apiKey: 'other-key-999' } },
  });
  const line = JSON.parse(text()) as {
    req: { headers: Record<string, string> };
    config: { apivideo: { apiKey: string } };
  };
  expect(line.req.headers).toEqual({
    authorization: '[REDACTED]',
    cookie: '[REDACTED]',
    'proxy-authorization': '[REDACTED]',
    accept: '*/*',
  });
  expect(line.config.apivideo.apiKey).toBe('[REDACTED]');
});

test('the key is scrubbed wherever else it turns up, plain or as Basic credentials', () => {
  const { logger, text } = capture([KEY]);
  const basic = Buffer.from(`${KEY}:`).toString('base64');
  logger.error(
    {
      err: new Error(`request failed for ${KEY}`),
      url: `https://x/?k=${KEY}`,
      header: `Basic ${basic}`,
    },
    `msg ${KEY}`,
  );
  expect(text()).not.toContain(KEY);
  expect(text()).not.toContain(basic);
  expect(text()).toContain('[REDACTED]');
});

test('scrubSecrets leaves text without secrets alone', () => {
  expect(scrubSecrets('nothing here', [KEY])).toBe('nothing here');
});

test('a token the request line did not carry is still found: escaped, encoded or in base64', () => {
  const token = `to_${'A1b2C3d4'.repeat(4)}`;
  const { logger, text } = capture([]);
  logger.warn({ err: new Error(`bad token:\n${token}`) }, 'unexpected error');
  logger.info({ note: `x%2574o%255F${token.slice(3)}` }, 'double-encoded');
  logger.info({ meta: Buffer.from(`name=${token}`).toString('base64') }, 'in base64');
  expect(text()).not.toContain(token.slice(3));
  expect(text().split('\n').filter(Boolean)).toHaveLength(3); // still one JSON line each
  for (const line of text().split('\n').filter(Boolean))
    expect(() => JSON.parse(line)).not.toThrow();
});
