import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { Config } from '../kernel/config';
import { hasClientAuth } from '../kernel/config';
import { RelayError } from '../kernel/errors';

/**
 * Who is uploading: `token:<fingerprint>`, `jwt:<sub>` or `anonymous:<address>`. The prefixes keep
 * the three namespaces apart: a JWT whose `sub` is "token:…" is `jwt:token:…`, never that token.
 */
export interface Principal {
  id: string;
  kind: 'token' | 'jwt' | 'anonymous';
  /** A JWT's `scope` claim; what a JWT principal may do beyond uploading (see hasScope). */
  scopes?: readonly string[];
}

const MAX_SUBJECT = 256;
/** Bounds what is kept of a `scope` claim: it rides on every request of the principal. */
const MAX_SCOPES = 64;
const MAX_SCOPE = 128;

/**
 * The `scope` claim as RFC 9068 writes it (space-separated), or as a list, as some issuers do.
 * Anything else is no scope at all.
 */
function scopesOf(claim: unknown): string[] {
  const list =
    typeof claim === 'string' ? claim.split(' ') : Array.isArray(claim) ? (claim as unknown[]) : [];
  return list
    .filter((s): s is string => typeof s === 'string' && s.length > 0 && s.length <= MAX_SCOPE)
    .slice(0, MAX_SCOPES);
}

const digest = (text: string) => createHash('sha256').update(text).digest();

/** Static tokens, compared in constant time (hashing first makes the lengths equal too). */
function tokenMatcher(tokens: string[]): (candidate: string) => Principal | undefined {
  const known = tokens.map((token) => ({
    hash: digest(token),
    id: `token:${digest(token).toString('hex').slice(0, 12)}`,
  }));
  return (candidate) => {
    const hash = digest(candidate);
    let found: Principal | undefined;
    for (const k of known) if (timingSafeEqual(k.hash, hash)) found = { id: k.id, kind: 'token' };
    return found;
  };
}

function jwtVerifier(
  auth: Config['auth'],
): ((token: string) => Promise<Principal | undefined>) | undefined {
  let key: Uint8Array | JWTVerifyGetKey;
  let algorithms: string[];
  if (auth.jwksUrl) {
    key = createRemoteJWKSet(new URL(auth.jwksUrl), {
      cacheMaxAge: 10 * 60_000,
      cooldownDuration: 30_000,
    });
    algorithms = ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA'];
  } else if (auth.jwtSecret) {
    key = new TextEncoder().encode(auth.jwtSecret);
    algorithms = ['HS256'];
  } else return undefined;
  return async (token) => {
    try {
      const { payload } = await jwtVerify(token, key as Uint8Array, {
        issuer: auth.jwtIssuer,
        audience: auth.jwtAudience,
        algorithms,
        requiredClaims: auth.jwtRequireExp ? ['exp'] : [],
      });
      // Bounded: the principal goes into logs and keys.
      return typeof payload.sub === 'string' && payload.sub && payload.sub.length <= MAX_SUBJECT
        ? { id: `jwt:${payload.sub}`, kind: 'jwt', scopes: scopesOf(payload.scope) }
        : undefined;
    } catch {
      return undefined;
    }
  };
}

function unauthorized(detail: string): RelayError {
  return new RelayError('unauthorized', detail, {
    headers: { 'WWW-Authenticate': 'Bearer realm="upload-relay"' },
  });
}

/**
 * Checks `Authorization: Bearer …` before anything else happens: no body byte is read and no
 * container is made for a caller we do not know. Sets `res.locals.principal`.
 */
export function clientAuth(auth: Config['auth']): RequestHandler {
  const matchToken = tokenMatcher(auth.apiTokens);
  const verifyJwt = jwtVerifier(auth);
  const required = hasClientAuth(auth);
  return async (req, res, next) => {
    // An upload token (src/upload-tokens/auth.ts) already named the minting principal.
    if (res.locals.principal) return next();
    const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    if (!required) {
      res.locals.principal = {
        id: `anonymous:${req.ip ?? 'unknown'}`,
        kind: 'anonymous',
      } satisfies Principal;
      return next();
    }
    if (!token) return next(unauthorized('Send Authorization: Bearer <token>.'));
    const principal = matchToken(token) ?? (await verifyJwt?.(token));
    if (!principal) return next(unauthorized('The token is not valid.'));
    res.locals.principal = principal;
    next();
  };
}

export function principalOf(res: { locals: Record<string, unknown> }): Principal {
  return res.locals.principal as Principal;
}

/**
 * Operator actions: a static token (RELAY_API_TOKENS) is the operator's backend and may do them
 * all; a JWT may only with the action's scope in its `scope` claim; an anonymous caller never.
 */
export function hasScope(principal: Principal, scope: string): boolean {
  if (principal.kind === 'token') return true;
  return principal.kind === 'jwt' && (principal.scopes ?? []).includes(scope);
}

/** /metrics: open, or behind its own bearer token. */
export function metricsAuth(metricsToken: string | undefined): RequestHandler {
  const match = metricsToken ? tokenMatcher([metricsToken]) : undefined;
  return (req: Request, _res, next) => {
    if (!match) return next();
    const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    if (token && match(token)) return next();
    next(unauthorized('Send Authorization: Bearer <METRICS_TOKEN>.'));
  };
}
