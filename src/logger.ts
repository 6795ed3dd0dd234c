import pino, { type DestinationStream, type Logger } from 'pino';
import { redactTokens } from './upload-tokens/token';

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
}

export function createLogger(options: LoggerOptions): Logger {
  const secrets = (options.secrets ?? []).filter((s): s is string => !!s && s.length >= 4);
  return pino(
    {
      level: options.level,
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      // Path redaction covers where a secret is expected; this covers where it is not, and upload
      // tokens, which are minted at run time and travel in URLs (`/upload?token=`).
      hooks: { streamWrite: (line) => redactTokens(scrubSecrets(line, secrets)) },
    },
    options.destination ?? pino.destination({ sync: false }),
  );
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
