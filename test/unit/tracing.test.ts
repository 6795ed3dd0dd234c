import { ConfigError, loadConfig, tracingEndpoint } from '../../src/kernel/config';
import { commandAndKeys } from '../../src/tracing/sdk';

describe('whether traces are on (src/tracing.ts and the start-up line decide alike)', () => {
  test.each([
    [{}, undefined],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, 'http://collector:4318'],
    [
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://traces:4318/v1/traces',
      },
      'http://traces:4318/v1/traces',
    ],
    [
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'TRUE' },
      undefined,
    ],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: ' ' }, undefined],
  ])('%j → %s', (env, endpoint) => {
    expect(tracingEndpoint(env)).toBe(endpoint);
    expect(loadConfig(env).tracing.endpoint).toBe(endpoint);
  });

  test('an endpoint that is not an http(s) URL stops start-up, and turns nothing on before that', () => {
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' };
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(tracingEndpoint(env)).toBeFalsy();
  });
});

describe('a Redis command in a span: its name and keys, never a value', () => {
  test.each([
    ['get', ['relay:session:abc'], 'GET relay:session:abc'],
    [
      'set',
      ['relay:session:abc', '{"rawMetadata":"secret"}', 'PX', 1000],
      'SET relay:session:abc [3 more]',
    ],
    [
      'evalsha',
      ['0123abcd', '2', 'relay:lock:abc', 'relay:lock:abc:release', 'owner-secret', '30000'],
      'EVALSHA relay:lock:abc relay:lock:abc:release',
    ],
    ['eval', ["return redis.call('get', KEYS[1])", '0', 'value'], 'EVAL'],
    [
      'setBuffer',
      [Buffer.from('relay:tail:abc'), Buffer.from('file bytes')],
      'SETBUFFER ? [1 more]',
    ],
    ['ping', [], 'PING'],
  ])('%s', (command, args, shown) => {
    expect(commandAndKeys(command, args)).toBe(shown);
  });
});
