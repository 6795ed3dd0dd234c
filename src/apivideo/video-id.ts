/**
 * api.video's video ids: `vi` then letters and digits (e.g. `vi4blUQJFrYWbaG44NChkH27`, 24
 * characters). Anything else is refused before it can reach an upstream URL, where `.`, `..`,
 * `%2e` or an encoded slash would change the path api.video sees.
 */
export const VIDEO_ID_PATTERN = /^vi[0-9A-Za-z]{8,40}$/;

export function isVideoId(value: unknown): value is string {
  return typeof value === 'string' && VIDEO_ID_PATTERN.test(value);
}
