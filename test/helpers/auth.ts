/** The Authorization header api.video accepts for a key: Basic, the key as user, no password. */
export function basicAuth(key: string): string {
  return 'Basic ' + Buffer.from(`${key}:`).toString('base64');
}

/** Headers that carry a relay token (or an api.video access token). */
export function bearer(token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` };
}
