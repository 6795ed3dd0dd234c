/**
 * Issue #24, tokens in logs: `/v1/upload-tokens/to%5F…` (or `%74o_…`) was accepted and its log
 * line held the whole live token, because redaction matched only a literal `to_`. Every form below
 * reaches the relay over a real socket, exactly as written; none may leave the token's secret part
 * in the log output, in any encoding a reader could undo.
 */
import { Readable } from 'node:stream';
import type { RunningEmulator } from '../../src/emulator/app';
import { startTestEmulator } from '../helpers/emulator';
import { multipartAround } from '../helpers/upload';
import { exactRequest } from '../helpers/raw-http';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { mintUploadToken } from '../helpers/upload-tokens';

const BACKEND = 'backend-token-0123456789';
let emulator: RunningEmulator;
let relay: TestRelay;
beforeAll(async () => {
  emulator = await startTestEmulator();
  // Debug: the request lines then carry every header too.
  relay = await startTestRelay(emulator, {
    env: { RELAY_API_TOKENS: BACKEND, LOG_LEVEL: 'debug' },
  });
});
afterAll(async () => {
  await relay.close();
  await emulator.close();
});

const hex = (c: string) => c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0');
/** Every character percent-encoded, hex digits in alternating case. */
const encodeAll = (s: string) =>
  [...s].map((c, i) => `%${i % 2 ? hex(c).toLowerCase() : hex(c)}`).join('');
/** `%` itself encoded again: what a double-encoding proxy or client sends. */
const again = (s: string) => s.replace(/%/g, '%25');

/** The token in every spelling the attack used, and the others a URL can carry. */
function spellings(token: string): Array<[string, string]> {
  const body = token.slice(3);
  const someEncoded = body.slice(0, 5) + encodeAll(body.slice(5, 9)) + body.slice(9);
  return [
    ['plain', token],
    ['%5F', `to%5F${body}`],
    ['%5f', `to%5f${body}`],
    ['%74o_', `%74o_${body}`],
    ['%74%6F%5F', `%74%6F%5F${body}`],
    ['every character encoded, mixed case', encodeAll(token)],
    ['body characters encoded', `to_${someEncoded}`],
    ['%255F (double)', `to%255F${body}`],
    ['%2574o_ (double)', `%2574o_${body}`],
    ['%25255F (triple)', `to%25255F${body}`],
    ['every character double-encoded', again(encodeAll(token))],
    ['upper-case prefix', `TO_${body}`],
    ['mixed-case prefix', `tO%5f${body}`],
    ['after %20', `%20${token}`],
    ['after +', `+${token}`],
    ['before %20', `${token}%20`],
    ['after %2B', `%2B${token}`],
  ];
}

/** Query strings that carry the token, under its name in any spelling or under another name. */
function queries(token: string): Array<[string, string]> {
  const forms = spellings(token);
  return [
    ...forms.map(([what, t]): [string, string] => [`token=${what}`, `token=${t}`]),
    ['%74oken=', `%74oken=${token}`],
    ['TOKEN=', `TOKEN=${token}`],
    ['Token=', `Token=${token}`],
    ['to%6Ben=', `to%6Ben=${token}`],
    ['token+=', `token+=${token}`],
    ['+token=', `+token=${token}`],
    ['%20token=', `%20token=${token}`],
    ['token=+…', `token=+${token}`],
    ['another name, after %20', `x=%20${token}`],
    ['another name, double-encoded', `x=${again(encodeAll(token))}`],
    ['twice', `token=${token}&token=${token}`],
    ['token[]=', `token[]=${token}`],
    ['without a value name', `a=1&${token}`],
  ];
}

/** Undoes percent-encoding (`+` as space) until nothing changes: what a log reader could do. */
function decodedFully(text: string): string {
  let out = text;
  for (let i = 0; i < 10; i++) {
    const next = out
      .replace(/\+/g, ' ')
      .replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
    if (next === out) break;
    out = next;
  }
  return out;
}

/** The secret part of the token, in every form the log output could hold it. */
function expectNowhere(logs: string, token: string): void {
  const body = token.slice(3);
  expect(logs).not.toContain(body);
  expect(decodedFully(logs)).not.toContain(body);
  // A reader could also undo base64 (tus metadata, a Basic header).
  for (const run of logs.match(/[A-Za-z0-9+/=_-]{40,}/g) ?? []) {
    for (let skip = 0; skip < 4; skip++) {
      const decoded = Buffer.from(run.slice(skip), 'base64').toString('latin1');
      expect(decodedFully(decoded)).not.toContain(body);
    }
  }
}

test('a live upload token in any encoding, in a path, a query or a header: nowhere in the logs', async () => {
  const { token } = await mintUploadToken(relay.url, BACKEND);
  const backend = { authorization: `Bearer ${BACKEND}` };
  const statuses: Record<string, number> = {};

  // GET /v1/upload-tokens/{token}: the forms Express decodes to the token are answered (the
  // attack), the others are not found; either way the line is logged.
  for (const [what, form] of spellings(token)) {
    const res = await exactRequest(relay.url, 'GET', `/v1/upload-tokens/${form}`, backend);
    statuses[`path ${what}`] = res.status;
  }
  // POST /upload?token=…: no body, so each is refused after (or at) the token check.
  for (const [what, query] of queries(token)) {
    const res = await exactRequest(relay.url, 'POST', `/upload?${query}`);
    statuses[`query ${what}`] = res.status;
  }
  // An upload that goes through: its own lines (the chunk, the outcome) carry the request too.
  const data = Buffer.alloc(1000, 1);
  const form = multipartAround(Readable.from([data]), data.length, { filename: 'clip.mp4' });
  const body = Buffer.concat(await form.body.toArray());
  const uploaded = await exactRequest(
    relay.url,
    'POST',
    `/upload?%74oken=to%5F${token.slice(3)}`,
    { 'content-type': form.contentType, 'content-length': String(body.length) },
    body,
  );
  expect(uploaded.status).toBe(201);
  // Headers, logged at debug: credentials, but also where a token rides without being one.
  const headerForms: Array<Record<string, string>> = [
    { referer: `https://app.example/upload?token=${token}` },
    { referer: `https://app.example/upload?t=%74o_${token.slice(3)}` },
    { 'x-upload-token': token },
    { 'x-anything': again(encodeAll(token)) },
    { 'x-forwarded-uri': `/upload?%74oken=to%5F${token.slice(3)}` },
    { cookie: `t=${token}` },
    { 'upload-metadata': `token ${Buffer.from(token).toString('base64')}` },
    {
      'upload-metadata': `filename ${Buffer.from(`clip-to%5F${token.slice(3)}`).toString('base64')}`,
    },
  ];
  for (const headers of headerForms) await exactRequest(relay.url, 'GET', '/v1/info', headers);
  await exactRequest(relay.url, 'POST', '/v1/uploads', {
    authorization: `Bearer ${token}`,
    'tus-resumable': '1.0.0',
    'upload-length': '10',
  });

  // The attack's forms were accepted: the test sent what it meant to.
  expect(statuses['path %5F']).toBe(200);
  expect(statuses['path %74o_']).toBe(200);
  expect(statuses['query %74oken=']).toBe(415);
  expect(statuses['query token=%5F']).toBe(415);

  const logs = relay.rawLogs();
  const requestLines = relay.logs().filter((l) => l.req && /request|refused/.test(String(l.msg)));
  expect(requestLines.length).toBeGreaterThanOrEqual(
    spellings(token).length + queries(token).length + headerForms.length,
  );
  expectNowhere(logs, token);
});

test('keys and secrets in a query string or a header, under any name spelling: redacted', async () => {
  const secret = 'sk_live_0123456789abcdefghijKLMNOP';
  const forms = [
    `/v1/info?api_key=${secret}`,
    `/v1/info?apiKey=${encodeAll(secret)}`,
    `/v1/info?%61ccess_token=${secret}`,
    `/v1/info?client%5Fsecret=${again(encodeAll(secret))}`,
    `/v1/info?Signature=${secret}`,
    `/v1/info?password=${secret}`,
  ];
  for (const path of forms) await exactRequest(relay.url, 'GET', path);
  await exactRequest(relay.url, 'GET', '/v1/info', { 'x-api-key': secret });
  await exactRequest(relay.url, 'GET', '/v1/info', { 'x-client-secret': encodeAll(secret) });
  const logs = relay.rawLogs();
  expect(logs).not.toContain(secret);
  expect(decodedFully(logs)).not.toContain(secret);
});
