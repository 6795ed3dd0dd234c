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
      hooks: { streamWrite: (line) => redactTokens(scrubSecrets(line, secrets)) },
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

export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join('[REDACTED]');
    const basic = Buffer.from(`${secret}:`).toString('base64');
    if (out.includes(basic)) out = out.split(basic).join('[REDACTED]');
  }
  return out;
}
