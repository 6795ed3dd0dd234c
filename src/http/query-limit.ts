import type { RequestHandler } from 'express';
import { RelayError } from '../kernel/errors';

/**
 * Node's querystring (Express's query parser) stops at 1000 parameters and drops the rest without
 * a word, so a field could vanish. Counted as it counts them: every `&`-separated piece, empty
 * ones included, so what passes here is parsed whole.
 */
export const MAX_QUERY_PARAMETERS = 1000;

export const queryLimit: RequestHandler = (req, _res, next) => {
  const start = req.url.indexOf('?');
  if (start < 0) return next();
  let pieces = 1;
  for (let i = req.url.indexOf('&', start); i >= 0; i = req.url.indexOf('&', i + 1)) pieces++;
  if (pieces <= MAX_QUERY_PARAMETERS) return next();
  next(
    new RelayError(
      'invalid_request',
      `The query string has ${pieces} parameters; at most ${MAX_QUERY_PARAMETERS} are read.`,
    ),
  );
};
