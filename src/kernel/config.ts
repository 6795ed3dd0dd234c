import { MAX_PART_SIZE, MIN_PART_SIZE, MiB, formatBytes } from './sizes';
import { BUDGET_SHARE, type SystemMemory } from './system-memory';
import {
  WEBHOOK_EVENT_TYPES,
  isWebhookEventType,
  type WebhookEventType,
} from './webhook-event-types';

/**
 * All settings, validated at once. `loadConfig` is pure: it reads only the object it is given,
 * so tests build any configuration without touching process.env.
 */

export type AuthScheme = 'basic' | 'bearer';
export type NodeEnv = 'development' | 'production' | 'test';

export interface Config {
  port: number;
  host: string;
  nodeEnv: NodeEnv;
  logLevel: string;
  apivideo: {
    /** Undefined only when the built-in emulator stands in (never in production). */
    apiKey: string | undefined;
    baseUrl: string;
    authScheme: AuthScheme;
    maxAttempts: number;
  };
  /** True when no key is set outside production: main.ts starts the emulator in-process. */
  useEmbeddedEmulator: boolean;
  upload: {
    partSize: number;
    partConcurrency: number;
    partBuffering: 'pooled' | 'chunks';
    /** UPLOAD_MEMORY_BUDGET: bytes all uploads may hold together. */
    memoryBudget: number;
    /** Where the budget came from, for the start-up line. */
    memoryBudgetFrom: string;
    /** UPLOAD_MEMORY_PER_CLIENT: a principal's share of the budget while others wait for room. */
    memoryPerClient: number;
    /** UPLOAD_MEMORY_WAIT_MS: how long an upload may wait for room before it is refused (0: no limit). */
    memoryWaitMs: number;
    /** UPLOAD_MIN_RATE: bytes a second a client must keep up to hold a whole part's room. */
    minRate: number;
    /** 0 means no limit. */
    maxFileSize: number;
    /** 0 means no limit on the whole request. */
    requestTimeoutMs: number;
    idleTimeoutMs: number;
  };
  headersTimeoutMs: number;
  auth: {
    /** Static bearer tokens; empty when none. */
    apiTokens: string[];
    jwtSecret: string | undefined;
    jwksUrl: string | undefined;
    jwtIssuer: string | undefined;
    jwtAudience: string | undefined;
    /** Refuse JWTs without `exp` (a token that never expires cannot be revoked by waiting). */
    jwtRequireExp: boolean;
    allowAnonymous: boolean;
    metricsToken: string | undefined;
  };
  limits: {
    maxConcurrentUploads: number;
    maxConcurrentPerClient: number;
    maxFields: number;
    maxFieldSize: number;
  };
  http: {
    corsOrigins: string[];
    /** Express's `trust proxy` value. */
    trustProxy: boolean | number | string;
  };
  shutdownGraceMs: number;
  /** Serve the upload page at `/`. */
  demoPage: boolean;
  resumable: {
    /** Sessions and locks in Redis when set; in this process's memory otherwise (one instance). */
    redisUrl: string | undefined;
    /** Every Redis key the relay writes starts with this (several relays can share one Redis). */
    redisKeyPrefix: string;
    /** A PEM CA to trust for a rediss:// REDIS_URL (a managed Redis with a private CA). */
    redisCaFile: string | undefined;
    /** Redis Sentinels that name the primary; REDIS_URL's host is then not used. Empty: none. */
    redisSentinels: Array<{ host: string; port: number }>;
    /** The primary's name as the Sentinels know it. */
    redisSentinelName: string;
    /** How long any Redis command may take before the relay gives up on it (a hung Redis). */
    redisCommandTimeoutMs: number;
    sessionTtlMs: number;
    /** Unfinished resumable uploads one client may have at once. */
    maxSessionsPerClient: number;
    /** Bytes the session store may hold in tails, all uploads together. */
    maxStoredBytes: number;
    /** Bytes one principal's tails may hold of it: its share. */
    maxStoredBytesPerClient: number;
  };
  network: {
    httpProxy: string | undefined;
    httpsProxy: string | undefined;
    noProxy: string | undefined;
    /** A CA (PEM file) trusted for the upstream only, on top of the usual ones. */
    caFile: string | undefined;
  };
  webhooks: {
    /** Empty when webhooks are off. */
    urls: string[];
    /** `whsec_` + base64, as Standard Webhooks has it; required when `urls` is not empty. */
    secret: string | undefined;
    /** Which upload events are sent (`webhook.test` always is). */
    events: WebhookEventType[];
    timeoutMs: number;
  };
  /**
   * OpenTelemetry traces: the SDK reads its own OTEL_* settings (src/tracing/sdk.ts); this is
   * only whether it runs, for the start-up line.
   */
  tracing: {
    /** Where spans go; undefined when traces are off. */
    endpoint: string | undefined;
  };
}

/** True when some client authentication is configured. */
export function hasClientAuth(auth: Config['auth']): boolean {
  return auth.apiTokens.length > 0 || !!auth.jwtSecret || !!auth.jwksUrl;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1000,
  kb: 1000,
  kib: 1024,
  m: 1000 ** 2,
  mb: 1000 ** 2,
  mib: MiB,
  g: 1000 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

/** "16777216", "16MiB", "16 MiB", "1.5GiB", "20MB" → bytes; undefined when unreadable. */
export function parseSize(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!match) return undefined;
  const unit = SIZE_UNITS[match[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Number(match[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

type Env = Record<string, string | undefined>;

/** Collects problems instead of throwing at the first one, so start-up reports them all. */
class Reader {
  readonly problems: string[];
  constructor(
    private readonly env: Env,
    earlier: readonly string[] = [],
  ) {
    this.problems = [...earlier];
  }

  raw(name: string): string | undefined {
    const value = this.env[name]?.trim();
    return value === '' ? undefined : value;
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const text = this.raw(name);
    if (text === undefined) return fallback;
    if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
      this.problems.push(`${name}: expected a whole number from ${min} to ${max}, got "${text}"`);
      return fallback;
    }
    return Number(text);
  }

  size(name: string, fallback: number, min: number, max: number): number {
    const text = this.raw(name);
    if (text === undefined) return fallback;
    const bytes = parseSize(text);
    if (bytes === undefined || bytes < min || bytes > max) {
      const range = `${formatBytes(min)} to ${formatBytes(max)}`;
      this.problems.push(
        `${name}: expected a size from ${range} (bytes, or e.g. 16MiB), got "${text}"`,
      );
      return fallback;
    }
    return bytes;
  }

  oneOf<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
    const text = this.raw(name);
    if (text === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(text)) {
      this.problems.push(`${name}: expected one of ${allowed.join(', ')}, got "${text}"`);
      return fallback;
    }
    return text as T;
  }

  /** "3600" (seconds), "90s", "30m", "24h", "7d" → ms. */
  duration(name: string, fallbackMs: number): number {
    const text = this.raw(name);
    if (text === undefined) return fallbackMs;
    const m = /^(\d+)\s*(s|m|h|d)?$/i.exec(text);
    const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[
      (m?.[2] ?? 's').toLowerCase() as 's'
    ];
    if (!m || Number(m[1]) === 0) {
      this.problems.push(
        `${name}: expected a duration such as 3600, 90s, 30m, 24h or 7d, got "${text}"`,
      );
      return fallbackMs;
    }
    return Number(m[1]) * unit;
  }

  bool(name: string, fallback: boolean): boolean {
    const text = this.raw(name);
    if (text === undefined) return fallback;
    if (text === 'true' || text === 'false') return text === 'true';
    this.problems.push(`${name}: expected true or false, got "${text}"`);
    return fallback;
  }

  /** Comma-separated; newlines separate too, so a secret file may hold one token per line. */
  list(name: string): string[] {
    return (this.raw(name) ?? '')
      .split(/[,\n]/)
      .map((s) => s.trim())
      .filter(Boolean);
  }

  optionalUrl(name: string): string | undefined {
    return this.raw(name) === undefined ? undefined : this.url(name, '');
  }

  /** Reads NAME or its lower-case twin, as curl and most tools do for proxy variables. */
  either(name: string): string | undefined {
    return this.raw(name) ?? this.raw(name.toLowerCase());
  }

  url(name: string, fallback: string): string {
    const text = this.raw(name) ?? fallback;
    try {
      const url = new URL(text);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('protocol');
      return text.replace(/\/+$/, '');
    } catch {
      this.problems.push(`${name}: expected an http(s) URL, got "${text}"`);
      return fallback;
    }
  }
}

/** What loadConfig assumes when it is not told the memory main.ts detected (tests). */
export const ASSUMED_MEMORY: SystemMemory = { bytes: 4 * 1024 * MiB, source: 'assumed' };

/**
 * `earlier`: problems found before (those of readSecretFiles), reported with the rest at once.
 * `system`: the memory detected at start-up (src/kernel/system-memory.ts), for UPLOAD_MEMORY_BUDGET's
 * default; passed in so this function reads nothing but its arguments.
 */
export function loadConfig(
  env: Env,
  earlier: readonly string[] = [],
  system: SystemMemory = ASSUMED_MEMORY,
): Config {
  const r = new Reader(env, earlier);
  const nodeEnv = r.oneOf<NodeEnv>('NODE_ENV', 'development', [
    'development',
    'production',
    'test',
  ]);
  const apiKey = r.raw('APIVIDEO_API_KEY');
  if (!apiKey && nodeEnv === 'production') {
    r.problems.push(
      'APIVIDEO_API_KEY: required when NODE_ENV=production (the built-in emulator is for development only)',
    );
  }
  const requestTimeoutMs = r.int('UPLOAD_REQUEST_TIMEOUT_MS', 0, 0, 2 ** 31 - 1);
  const headersTimeoutMs = r.int('HTTP_HEADERS_TIMEOUT_MS', 20_000, 1000, 600_000);
  const apiTokens = r.list('RELAY_API_TOKENS');
  if (apiTokens.some((t) => t.length < 16))
    r.problems.push('RELAY_API_TOKENS: each token must be at least 16 characters');
  const jwtSecret = r.raw('RELAY_JWT_SECRET');
  if (jwtSecret !== undefined && jwtSecret.length < 32) {
    r.problems.push('RELAY_JWT_SECRET: must be at least 32 characters (HS256 needs 256 bits)');
  }
  const auth = {
    apiTokens,
    jwtSecret,
    jwksUrl: r.optionalUrl('RELAY_JWKS_URL'),
    jwtIssuer: r.raw('RELAY_JWT_ISSUER'),
    jwtAudience: r.raw('RELAY_JWT_AUDIENCE'),
    jwtRequireExp: r.bool('RELAY_JWT_REQUIRE_EXP', true),
    allowAnonymous: r.bool('RELAY_ALLOW_ANONYMOUS', false),
    metricsToken: r.raw('METRICS_TOKEN'),
  };
  if (auth.jwtSecret && auth.jwksUrl) {
    // Two issuers would share one `jwt:` namespace of subjects: one must be chosen.
    r.problems.push(
      'RELAY_JWT_SECRET / RELAY_JWKS_URL: both are set; set one (HS256 tokens signed with the secret, or tokens verified with the JWKS)',
    );
  }
  if (nodeEnv === 'production' && !hasClientAuth(auth) && !auth.allowAnonymous) {
    r.problems.push(
      'RELAY_API_TOKENS / RELAY_JWT_SECRET / RELAY_JWKS_URL: none is set; in production set one, or RELAY_ALLOW_ANONYMOUS=true to accept uploads from anyone on purpose',
    );
  }
  const config: Config = {
    port: r.int('PORT', 3000, 0, 65535),
    host: r.raw('HOST') ?? '0.0.0.0',
    nodeEnv,
    logLevel: r.oneOf('LOG_LEVEL', 'info', LOG_LEVELS),
    apivideo: {
      apiKey,
      baseUrl: r.url('APIVIDEO_BASE_URL', 'https://ws.api.video'),
      authScheme: r.oneOf<AuthScheme>('APIVIDEO_AUTH', 'basic', ['basic', 'bearer']),
      maxAttempts: r.int('UPSTREAM_MAX_ATTEMPTS', 5, 1, 20),
    },
    useEmbeddedEmulator: !apiKey && nodeEnv !== 'production',
    upload: {
      partSize: r.size('UPLOAD_PART_SIZE', 16 * MiB, MIN_PART_SIZE, MAX_PART_SIZE),
      partConcurrency: r.int('UPLOAD_PART_CONCURRENCY', 2, 1, 8),
      partBuffering: r.oneOf<'pooled' | 'chunks'>('UPLOAD_PART_BUFFERING', 'pooled', [
        'pooled',
        'chunks',
      ]),
      memoryBudget: 0, // below, once UPLOAD_PART_SIZE is known
      memoryBudgetFrom: '',
      memoryPerClient: 0, // below, once the budget is known
      memoryWaitMs: r.int('UPLOAD_MEMORY_WAIT_MS', 120_000, 0, 2 ** 31 - 1),
      minRate: r.size('UPLOAD_MIN_RATE', 16 * 1024, 0, 1024 * MiB),
      maxFileSize: r.size('UPLOAD_MAX_FILE_SIZE', 0, 0, Number.MAX_SAFE_INTEGER),
      requestTimeoutMs,
      idleTimeoutMs: r.int('UPLOAD_IDLE_TIMEOUT_MS', 60_000, 0, 2 ** 31 - 1),
    },
    headersTimeoutMs,
    auth,
    limits: {
      maxConcurrentUploads: r.int('UPLOAD_MAX_CONCURRENT', 1000, 1, 100_000),
      maxConcurrentPerClient: r.int('UPLOAD_MAX_CONCURRENT_PER_CLIENT', 4, 1, 10_000),
      maxFields: r.int('UPLOAD_MAX_FIELDS', 32, 1, 1000),
      maxFieldSize: r.size('UPLOAD_MAX_FIELD_SIZE', 64 * 1024, 1, 16 * MiB),
    },
    http: {
      corsOrigins: r.list('CORS_ORIGINS'),
      trustProxy: parseTrustProxy(r),
    },
    shutdownGraceMs: r.int('SHUTDOWN_GRACE_MS', 60_000, 0, 24 * 3600 * 1000),
    demoPage: r.bool('RELAY_DEMO_PAGE', nodeEnv !== 'production'),
    resumable: {
      redisUrl: redisUrl(r),
      redisKeyPrefix: redisKeyPrefix(r),
      redisCaFile: redisCaFile(r),
      redisSentinels: redisSentinels(r),
      redisSentinelName: r.raw('REDIS_SENTINEL_NAME') ?? 'mymaster',
      redisCommandTimeoutMs: r.int('REDIS_COMMAND_TIMEOUT_MS', 2000, 100, 60_000),
      sessionTtlMs: r.duration('UPLOAD_SESSION_TTL', 24 * 3600 * 1000),
      maxSessionsPerClient: r.int('UPLOAD_MAX_SESSIONS_PER_CLIENT', 20, 1, 100_000),
      maxStoredBytes: r.size('UPLOAD_SESSION_STORE_MAX_BYTES', 1024 * MiB, 5 * MiB, 2 ** 50),
      maxStoredBytesPerClient: 0, // below, once UPLOAD_PART_SIZE is known
    },
    network: {
      httpProxy: r.either('HTTP_PROXY'),
      httpsProxy: r.either('HTTPS_PROXY'),
      noProxy: r.either('NO_PROXY'),
      caFile: r.raw('APIVIDEO_CA_FILE'),
    },
    webhooks: webhookSettings(r),
    tracing: tracingSettings(r),
  };
  Object.assign(config.upload, memoryBudget(r, config.upload.partSize, system));
  // A quarter of the budget, and never less than two parts: one principal's uploads can go on
  // (a part filling, one in flight) while it is past its share and others wait.
  config.upload.memoryPerClient = r.size(
    'UPLOAD_MEMORY_PER_CLIENT',
    Math.max(2 * config.upload.partSize, Math.floor(config.upload.memoryBudget / 4)),
    5 * MiB,
    Number.MAX_SAFE_INTEGER,
  );
  config.resumable.maxStoredBytesPerClient = storedBytesPerClient(
    r,
    config.resumable.maxStoredBytes,
    config.upload.partSize,
  );
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}

/**
 * UPLOAD_MAX_STORED_BYTES_PER_CLIENT, or its default: an eighth of the store, so that it
 * takes eight principals filling their shares to fill it (and one alone never can), but never
 * less than one part of UPLOAD_PART_SIZE, so that one upload sent in PATCHes smaller than a part
 * can always gather a whole part. Never more than the store itself.
 */
function storedBytesPerClient(r: Reader, total: number, partSize: number): number {
  const fallback = Math.min(total, Math.max(Math.floor(total / 8), partSize));
  return Math.min(total, r.size('UPLOAD_MAX_STORED_BYTES_PER_CLIENT', fallback, 5 * MiB, 2 ** 50));
}

/**
 * UPLOAD_MEMORY_BUDGET, or its default: a share of the memory the relay may use (BUDGET_SHARE),
 * whole MiB, never below one part of UPLOAD_PART_SIZE (a budget below that could not hold one).
 */
function memoryBudget(
  r: Reader,
  partSize: number,
  system: SystemMemory,
): { memoryBudget: number; memoryBudgetFrom: string } {
  const share = BUDGET_SHARE[system.source];
  const fallback = Math.max(partSize, Math.floor((system.bytes * share) / MiB) * MiB);
  const set = r.raw('UPLOAD_MEMORY_BUDGET') !== undefined;
  const bytes = r.size('UPLOAD_MEMORY_BUDGET', fallback, 5 * MiB, 1024 * 1024 * MiB);
  if (set && bytes < partSize) {
    r.problems.push(
      `UPLOAD_MEMORY_BUDGET: must be at least UPLOAD_PART_SIZE (${formatBytes(partSize)}), got ${formatBytes(bytes)}`,
    );
  }
  const memory = formatBytes(Math.floor(system.bytes / MiB) * MiB);
  const of = {
    'cgroup v2': `the cgroup v2 limit (${memory})`,
    'cgroup v1': `the cgroup v1 limit (${memory})`,
    machine: `the machine's memory (${memory})`,
    assumed: `an assumed ${memory}`,
  }[system.source];
  const from = set ? 'UPLOAD_MEMORY_BUDGET' : `${share * 100} % of ${of}`;
  return { memoryBudget: bytes, memoryBudgetFrom: from };
}

/** TRUST_PROXY as Express takes it: true/false, a hop count, or addresses and subnets. */
function parseTrustProxy(r: Reader): boolean | number | string {
  const text = r.raw('TRUST_PROXY');
  if (text === undefined || text === 'false') return false;
  if (text === 'true') return true;
  if (/^\d+$/.test(text)) return Number(text);
  return text;
}

function redisKeyPrefix(r: Reader): string {
  const text = r.raw('REDIS_KEY_PREFIX') ?? 'apivideo-relay:';
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(text)) {
    r.problems.push(
      `REDIS_KEY_PREFIX: expected 1 to 64 letters, digits or _ . : -, got "${text.slice(0, 80)}"`,
    );
    return 'apivideo-relay:';
  }
  return text;
}

function redisUrl(r: Reader): string | undefined {
  const text = r.raw('REDIS_URL');
  if (text !== undefined && !/^rediss?:\/\//.test(text)) {
    // The value is not echoed: it may carry a password.
    r.problems.push('REDIS_URL: expected a redis:// or rediss:// URL');
    return undefined;
  }
  return text;
}

function redisCaFile(r: Reader): string | undefined {
  const file = r.raw('REDIS_CA_FILE');
  if (file !== undefined && !/^rediss:\/\//.test(r.raw('REDIS_URL') ?? '')) {
    r.problems.push('REDIS_CA_FILE: only used with a rediss:// (TLS) REDIS_URL');
  }
  return file;
}

/** "host:port,host:port"; with them REDIS_URL still gives the password, database and TLS. */
function redisSentinels(r: Reader): Array<{ host: string; port: number }> {
  const entries = r.list('REDIS_SENTINELS');
  const sentinels = entries.map((entry) =>
    /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(entry),
  );
  if (sentinels.some((m) => !m || Number(m[2]) < 1 || Number(m[2]) > 65535)) {
    r.problems.push('REDIS_SENTINELS: expected host:port pairs, comma-separated');
    return [];
  }
  if (entries.length > 0 && r.raw('REDIS_URL') === undefined) {
    r.problems.push(
      'REDIS_SENTINELS: needs REDIS_URL too (its password, database and rediss:// apply to the primary the Sentinels name)',
    );
  }
  return sentinels.map((m) => ({ host: m![1]!.replace(/^\[|\]$/g, ''), port: Number(m![2]) }));
}

/**
 * Traces are on when an OTLP endpoint is set, as OpenTelemetry's own SDKs have it, unless
 * OTEL_SDK_DISABLED says otherwise. The traces-only endpoint wins, as it does in the SDK.
 */
function tracingSettings(r: Reader): Config['tracing'] {
  const disabled = r.raw('OTEL_SDK_DISABLED')?.toLowerCase() === 'true';
  const endpoint =
    r.optionalUrl('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ??
    r.optionalUrl('OTEL_EXPORTER_OTLP_ENDPOINT');
  return { endpoint: disabled ? undefined : endpoint };
}

/**
 * Whether traces are on, for src/tracing.ts, which must decide before loadConfig can run (see
 * there): the same rule as loadConfig's, so the start-up line says what the process does.
 */
export function tracingEndpoint(env: Env): string | undefined {
  return tracingSettings(new Reader(env)).endpoint;
}

/**
 * Settings that may instead name a file holding the value, as `NAME_FILE` (Docker and Kubernetes
 * secrets): the value never has to sit in the environment, where `ps e`, `docker inspect` and
 * crash reports show it. REDIS_URL is here because a managed Redis puts its password in the URL.
 */
export const SECRET_SETTINGS = [
  'APIVIDEO_API_KEY',
  'RELAY_API_TOKENS',
  'RELAY_JWT_SECRET',
  'METRICS_TOKEN',
  'RELAY_WEBHOOK_SECRET',
  'REDIS_URL',
] as const;

/**
 * Resolves every `NAME_FILE` of SECRET_SETTINGS into `NAME`, for loadConfig. main.ts passes the
 * file reader (it is the one place that touches the file system); tests pass a fake. Problems
 * name the setting and the path, never the content. Surrounding whitespace is dropped: `echo` and
 * editors end files with a newline that is not part of the secret.
 */
export function readSecretFiles(
  env: Env,
  readFile: (path: string) => string,
): { env: Env; problems: string[] } {
  const resolved: Env = { ...env };
  const problems: string[] = [];
  for (const name of SECRET_SETTINGS) {
    const path = env[`${name}_FILE`]?.trim();
    if (!path) continue;
    delete resolved[`${name}_FILE`];
    if (env[name]?.trim()) {
      problems.push(`${name} and ${name}_FILE are both set: set one of them`);
      continue;
    }
    let content: string;
    try {
      content = readFile(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
      problems.push(`${name}_FILE: cannot read "${path}" (${code})`);
      continue;
    }
    if (content.trim() === '') problems.push(`${name}_FILE: "${path}" is empty`);
    else resolved[name] = content.trim();
  }
  return { env: resolved, problems };
}

const MAX_WEBHOOK_URLS = 10;

function webhookSettings(r: Reader): Config['webhooks'] {
  const urls = r.list('RELAY_WEBHOOK_URL');
  if (urls.length > MAX_WEBHOOK_URLS)
    r.problems.push(`RELAY_WEBHOOK_URL: at most ${MAX_WEBHOOK_URLS} URLs, got ${urls.length}`);
  for (const [index, text] of urls.entries()) {
    let ok = false;
    try {
      const url = new URL(text);
      ok = url.protocol === 'http:' || url.protocol === 'https:';
    } catch {
      // reported below
    }
    // The URL is not echoed: it may carry a credential.
    if (!ok) r.problems.push(`RELAY_WEBHOOK_URL: URL number ${index + 1} is not an http(s) URL`);
  }
  const secret = r.raw('RELAY_WEBHOOK_SECRET');
  if (secret !== undefined && !isWebhookSecret(secret)) {
    r.problems.push(
      'RELAY_WEBHOOK_SECRET: expected whsec_ followed by 24 to 64 random bytes in base64 (e.g. `echo whsec_$(openssl rand -base64 32)`)',
    );
  }
  if (urls.length > 0 && secret === undefined)
    r.problems.push('RELAY_WEBHOOK_SECRET: required when RELAY_WEBHOOK_URL is set');
  const listed = r.list('RELAY_WEBHOOK_EVENTS');
  const unknown = listed.filter((name) => !isWebhookEventType(name));
  if (unknown.length > 0) {
    r.problems.push(
      `RELAY_WEBHOOK_EVENTS: unknown event ${unknown.map((n) => `"${n.slice(0, 40)}"`).join(', ')}; known: ${WEBHOOK_EVENT_TYPES.join(', ')}`,
    );
  }
  const events =
    listed.length > 0
      ? [...new Set(listed.filter(isWebhookEventType))]
      : WEBHOOK_EVENT_TYPES.filter((type) => type !== 'webhook.test');
  return {
    urls,
    secret,
    events,
    timeoutMs: r.int('RELAY_WEBHOOK_TIMEOUT_MS', 10_000, 100, 120_000),
  };
}

/** Standard Webhooks' secret form: `whsec_` and base64 of 24 to 64 bytes. */
export function isWebhookSecret(text: string): boolean {
  const match = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(text);
  if (!match || match[1]!.length % 4 !== 0) return false;
  const bytes = Buffer.from(match[1]!, 'base64').length;
  return bytes >= 24 && bytes <= 64;
}
