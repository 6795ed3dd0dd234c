import { Writable } from 'node:stream';
import { createLogger, prettyLogsWanted } from '../../src/kernel/logger';

function capture() {
  let text = '';
  const destination = new Writable({
    write(chunk: Buffer, _e, done) {
      text += chunk.toString();
      done();
    },
  });
  return { destination, text: () => text };
}

test('pretty only for a terminal outside production', () => {
  expect(prettyLogsWanted(true, 'development')).toBe(true);
  expect(prettyLogsWanted(true, 'test')).toBe(true);
  expect(prettyLogsWanted(true, 'production')).toBe(false);
  expect(prettyLogsWanted(false, 'development')).toBe(false);
  expect(prettyLogsWanted(undefined, 'development')).toBe(false); // a pipe, a file, a collector
});

test('pretty lines are readable, one per request, and still scrub secrets', async () => {
  const out = capture();
  const logger = createLogger({
    level: 'info',
    pretty: true,
    secrets: ['super-secret-key-123'],
    destination: out.destination,
  });
  logger.warn({ detail: 'key super-secret-key-123 leaked' }, 'api.video said no');
  logger.info(
    { req: { id: 'r1', method: 'POST', url: '/v1/videos' }, res: { statusCode: 201 } },
    'request completed',
  );
  logger.flush();
  await new Promise((resolve) => setImmediate(resolve));
  const lines = out.text().trim().split('\n');
  expect(lines).toHaveLength(2);
  expect(() => JSON.parse(lines[0]!) as unknown).toThrow();
  expect(lines[0]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: api\.video said no/);
  expect(lines[0]).toContain('[REDACTED]');
  expect(out.text()).not.toContain('super-secret-key-123');
  expect(lines[1]).toContain('INFO: POST /v1/videos 201 · request completed');
});

test('JSON otherwise', () => {
  const out = capture();
  const logger = createLogger({ level: 'info', destination: out.destination });
  logger.info('hello');
  expect(JSON.parse(out.text())).toMatchObject({ level: 30, msg: 'hello' });
});
