import {
  ApiVideoHttpError,
  ApiVideoInvalidIdError,
  ApiVideoKeyRejectedError,
  ApiVideoNetworkError,
  ApiVideoProxyError,
} from '../apivideo/errors';
import { RelayError, isRelayError } from '../kernel/errors';

/** What the client is told when api.video fails us. Never the key, never a stack. */
export function toRelayError(err: unknown): RelayError {
  if (isRelayError(err)) return err;
  if (err instanceof ApiVideoKeyRejectedError) {
    return new RelayError(
      'upstream_key_rejected',
      'The relay is not able to upload right now; its operator has been told.',
      { cause: err },
    );
  }
  if (err instanceof ApiVideoHttpError) {
    return new RelayError(
      'upstream_failed',
      `api.video answered ${err.status}: ${err.problemTitle}`,
      { cause: err },
    );
  }
  if (err instanceof ApiVideoNetworkError && err.code === 'tls_error') {
    return new RelayError(
      'upstream_tls_error',
      `The TLS connection to api.video failed (${err.causeCode}); a proxy or gateway may need APIVIDEO_CA_FILE.`,
      { cause: err },
    );
  }
  if (err instanceof ApiVideoProxyError) {
    return new RelayError(
      'upstream_proxy_error',
      `The outbound proxy refused the connection to api.video (${err.status}).`,
      { cause: err },
    );
  }
  if (
    (err instanceof ApiVideoNetworkError && err.code === 'timeout') ||
    (err as Error)?.name === 'TimeoutError' // an AbortSignal.timeout() the caller set
  ) {
    return new RelayError('upstream_timeout', 'api.video did not answer in time.', {
      cause: err,
    });
  }
  if (err instanceof ApiVideoInvalidIdError) {
    return new RelayError('invalid_video_id', 'That is not an api.video video id.', {
      cause: err,
    });
  }
  if (err instanceof ApiVideoNetworkError) {
    return new RelayError(
      'upstream_unreachable',
      `api.video could not be reached (${err.causeCode})`,
      { cause: err },
    );
  }
  return new RelayError('internal_error', 'The upload failed unexpectedly.', { cause: err });
}
