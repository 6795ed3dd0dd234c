import type { IncomingHttpHeaders } from 'node:http';
import { canonicalForm, holdsCredential } from './logger';

const REDACTED = '[REDACTED]';

/** Longest URL a log line carries: a client's 16 KiB of path is not worth keeping. */
const MAX_LOGGED_URL = 2048;

/**
 * Query parameter and header names whose value is a credential whatever it looks like, matched on
 * the decoded, lower-cased name (`%74oken`, `Token`, `token[]`, `client%5Fsecret`). Broad on
 * purpose: a log line that loses a harmless value costs nothing.
 */
const SECRET_NAME = /token|secret|passw|pwd|key|sig|auth|credential|session|cookie|jwt/;

const isSecretName = (name: string) => SECRET_NAME.test(canonicalForm(name).trim().toLowerCase());
const holdsToken = (text: string) => holdsCredential(canonicalForm(text));

/**
 * The URL as a log line may show it. Each path segment and query parameter is judged on its
 * decoded form, as the router and the query parser will read it: a segment that decodes to an
 * upload token (`to%5F…`, `%74o_…`, `%255F`) goes, and so does the value of a parameter named like
 * a credential (`?token=`, `?%74oken=`, `?api_key=`) or holding a token under any name. Redacted
 * first, then bounded, so a cut never leaves part of a token.
 */
export function loggableUrl(url: string): string {
  const q = url.indexOf('?');
  const path = q >= 0 ? url.slice(0, q) : url;
  let safe = path
    .split('/')
    .map((segment) => (holdsToken(segment) ? REDACTED : segment))
    .join('/');
  if (q >= 0)
    safe +=
      '?' +
      url
        .slice(q + 1)
        .split('&')
        .map(loggableParameter)
        .join('&');
  return safe.length > MAX_LOGGED_URL ? `${safe.slice(0, MAX_LOGGED_URL)}…` : safe;
}

function loggableParameter(parameter: string): string {
  const eq = parameter.indexOf('=');
  const name = eq >= 0 ? parameter.slice(0, eq) : parameter;
  if (holdsToken(name)) return REDACTED;
  if (eq < 0) return parameter;
  const value = parameter.slice(eq + 1);
  return isSecretName(name) || holdsToken(value) ? `${name}=${REDACTED}` : parameter;
}

/**
 * Request headers as a debug line shows them: credentials by name (Authorization, Cookie,
 * X-Api-Key, X-Upload-Token…), URLs as loggableUrl shows them (Referer, X-Forwarded-Uri), tus
 * metadata with each value judged decoded, and any other value that decodes to a token.
 */
export function loggableHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out[name] = Array.isArray(value)
      ? value.map((v) => loggableHeader(name, v))
      : loggableHeader(name, value);
  }
  return out;
}

function loggableHeader(name: string, value: string): string {
  if (isSecretName(name)) return REDACTED;
  if (name === 'upload-metadata') return loggableTusMetadata(value);
  const safe = loggableUrl(value);
  return holdsToken(safe) ? REDACTED : safe;
}

/** `key base64,key base64`: a value is looked at as the server decodes it. */
function loggableTusMetadata(value: string): string {
  return value
    .split(',')
    .map((pair) => {
      const [key = '', encoded] = pair.trim().split(/\s+/, 2);
      if (encoded === undefined) return holdsToken(key) ? REDACTED : pair;
      if (holdsToken(key)) return REDACTED;
      const decoded = Buffer.from(encoded, 'base64').toString('latin1');
      return isSecretName(key) || holdsToken(decoded) || holdsToken(encoded)
        ? `${key} ${REDACTED}`
        : pair;
    })
    .join(',');
}
