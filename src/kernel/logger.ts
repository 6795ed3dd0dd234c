import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Upload tokens (`to_` and 32 base64url characters, src/upload-tokens/token.ts) wherever they
 * turn up in a log line (a URL's path or query string, a header). In
 * any case, since `TO_…` still spells out the secret part. With the token's full length it matches
 * anywhere: an encoded character or a JSON escape before it (`%20to_…`, an escaped newline) is no
 * word boundary. Shorter, only after a boundary, so `upload_to_somewhere` stays readable.
 */
export const TOKEN_IN_TEXT = /to_[A-Za-z0-9_-]{32,}|\bto_[A-Za-z0-9_-]+/gi;

export function redactTokens(text: string): string {
  return text.replace(TOKEN_IN_TEXT, 'to_[REDACTED]');
}

const TOKEN_ANYWHERE = new RegExp(TOKEN_IN_TEXT.source, 'i');

/** Whether text, already decoded (see canonicalForm in logger.ts), holds an upload token. */
export function containsToken(text: string): boolean {
  return TOKEN_ANYWHERE.test(text);
}

export type { Logger } from 'pino';

/** Paths that can carry credentials in a request log or in a logged config. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'config.apivideo.apiKey',
  'apiKey',
  '*.apiKey',
  'headers.authorization',
  '*.headers.authorization',
];

export interface LoggerOptions {
  level: string;
  /** Literal values that must never be written, wherever they turn up (an error message, a URL). */
  secrets?: Array<string | undefined>;
  destination?: DestinationStream;
  /** Human-readable lines (pino-pretty) instead of JSON; see prettyLogsWanted. */
  pretty?: boolean;
}

/** Pretty for a person at a terminal; JSON for everything that collects logs (and production). */
export function prettyLogsWanted(stdoutIsTTY: boolean | undefined, nodeEnv: string): boolean {
  return stdoutIsTTY === true && nodeEnv !== 'production';
}

type PrettyFactory = (options: Record<string, unknown>) => DestinationStream;

/**
 * pino-pretty is a dev dependency: a production image never has a terminal to be pretty for, so it
 * does not carry it. Where it is missing (npm ci --omit=dev), lines stay JSON.
 */
function loadPrettyFactory(): PrettyFactory | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- optional, so not an import
    return (require('pino-pretty') as { default: PrettyFactory }).default;
  } catch {
    return undefined;
  }
}

export function createLogger(options: LoggerOptions): Logger {
  const secrets = (options.secrets ?? []).filter((s): s is string => !!s && s.length >= 4);
  const pretty = options.pretty ? loadPrettyFactory() : undefined;
  return pino(
    {
      level: options.level,
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      // Path redaction covers where a secret is expected; this covers where it is not, and upload
      // tokens, which are minted at run time and travel in URLs (`/upload?token=`).
      hooks: { streamWrite: (line) => scrubLine(line, secrets) },
    },
    pretty
      ? pretty({
          destination: options.destination ?? 1,
          colorize: !options.destination,
          translateTime: 'SYS:HH:MM:ss.l',
          // One line per request, without the request's object spread over ten lines.
          ignore: 'req,res,responseTime',
          messageFormat: '{if req.method}{req.method} {req.url} {res.statusCode} · {end}{msg}',
          singleLine: true,
          // A person's terminal: every line out before the process exits (Ctrl-C, a failed start).
          sync: true,
        })
      : (options.destination ?? pino.destination({ sync: false })),
  );
}

/**
 * The last guard on every line written, whatever put the credential there: the configured secrets
 * as they are, then any stretch that percent-decoding or base64-decoding turns into a token or a
 * secret, then upload tokens as they are. Decoding first and matching there is what holds against
 * spellings nobody listed (`%74o_`, `%255F`, `%20to_`, a token inside tus metadata).
 */
export function scrubLine(line: string, secrets: readonly string[]): string {
  let out = scrubSecrets(line, secrets);
  out = out.replace(URL_RUN, (run) =>
    run.includes('%') && holdsCredential(canonicalForm(run), secrets) ? REDACTED : run,
  );
  out = out.replace(BASE64_RUN, (run) =>
    base64Readings(run).some((text) => holdsCredential(canonicalForm(text), secrets))
      ? REDACTED
      : run,
  );
  return redactTokens(out);
}

const REDACTED = '[REDACTED]';

/**
 * What a URL's characters (and percent-escapes) can spell, and no JSON quote or backslash, so a
 * replacement keeps the line valid JSON. Decoding only runs on the runs that hold a `%`.
 */
const URL_RUN = /[\w.~+%-]+/g;
/** The shortest base64 of a token is 47 characters; shorter runs are not looked into. */
const BASE64_RUN = /[A-Za-z0-9+/_-]{44,}={0,2}/g;
/** Enough for any encoding a proxy or a client stacks (`%25255F` is three). */
const MAX_DECODING_ROUNDS = 8;

/**
 * Text as a server would end up reading it: percent-escapes decoded (byte by byte, so a broken
 * UTF-8 sequence does not stop it) and `+` read as a space, again and again while that changes it.
 */
export function canonicalForm(text: string): string {
  let out = text;
  for (let round = 0; round < MAX_DECODING_ROUNDS; round++) {
    const next = out
      .replace(/\+/g, ' ')
      .replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    if (next === out) break;
    out = next;
  }
  return out;
}

/** Whether decoded text holds an upload token or one of the secrets (in any letter case). */
export function holdsCredential(decoded: string, secrets: readonly string[] = []): boolean {
  if (containsToken(decoded)) return true;
  if (secrets.length === 0) return false;
  const lower = decoded.toLowerCase();
  return secrets.some((secret) => lower.includes(secret.toLowerCase()));
}

/** A run read as base64 from each of the four places a 4-character group can start. */
function base64Readings(run: string): string[] {
  return [0, 1, 2, 3].map((skip) => Buffer.from(run.slice(skip), 'base64').toString('latin1'));
}

export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join('[REDACTED]');
    const basic = Buffer.from(`${secret}:`).toString('base64');
    if (out.includes(basic)) out = out.split(basic).join('[REDACTED]');
  }
  return out;
}
