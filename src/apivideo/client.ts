import type { Dispatcher } from 'undici';
import { upstreamDispatcher } from './dispatcher';
import { BasicCredentials, BearerCredentials, type TokenAnswer } from './credentials';
import { ApiVideoHttpError, ApiVideoInvalidIdError, ApiVideoKeyRejectedError } from './errors';
import { multipartFileBody, multipartStreamBody } from './part-body';
import { DEFAULT_RETRY, type RetryPolicy } from './retry';
import { tracing } from '../kernel/trace-points';
import { Transport, type Credentials, type RetryEvent } from './transport';
import type { Video, VideoCreationPayload, VideoStatus } from './types';
import { isVideoId } from './video-id';

export interface ApiVideoClientOptions {
  apiKey: string;
  baseUrl: string;
  authScheme?: 'basic' | 'bearer';
  maxAttempts: number;
  /** Tests shorten the backoff; production keeps the defaults. */
  retry?: Partial<Omit<RetryPolicy, 'maxAttempts'>>;
  dispatcher?: Dispatcher;
  timeouts?: { connectMs?: number; headersMs?: number; bodyMs?: number };
  userAgent?: string;
}

export interface CallOptions {
  signal?: AbortSignal;
  maxAttempts?: number;
  onRetry?: (event: RetryEvent) => void;
  /** Called after each request sent, with the status answered (undefined: no answer). */
  onAttempt?: (status: number | undefined) => void;
}

/** The typed api.video client the relay uses: containers, status, and part uploads. */
export class ApiVideoClient {
  private readonly transport: Transport;
  private readonly credentials: Credentials;
  readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;

  constructor(options: ApiVideoClientOptions) {
    this.ownsDispatcher = !options.dispatcher;
    this.dispatcher = options.dispatcher ?? upstreamDispatcher({ timeouts: options.timeouts });
    this.transport = new Transport({
      baseUrl: options.baseUrl.replace(/\/+$/, ''),
      dispatcher: this.dispatcher,
      retry: { ...DEFAULT_RETRY, ...options.retry, maxAttempts: options.maxAttempts },
      userAgent: options.userAgent ?? 'apivideo-upload-relay',
    });
    this.credentials =
      options.authScheme === 'bearer'
        ? new BearerCredentials({
            login: (signal) => this.token('/auth/api-key', { apiKey: options.apiKey }, signal),
            refresh: (refreshToken, signal) =>
              this.token('/auth/refresh', { refreshToken }, signal),
          })
        : new BasicCredentials(options.apiKey);
  }

  createVideo(payload: VideoCreationPayload, options: CallOptions = {}): Promise<Video> {
    return this.call('createVideo', { method: 'POST', path: '/videos', json: payload }, options);
  }

  async getVideo(videoId: string, options: CallOptions = {}): Promise<Video> {
    return this.call('getVideo', { method: 'GET', path: videoPath('getVideo', videoId) }, options);
  }

  async deleteVideo(videoId: string, options: CallOptions = {}): Promise<void> {
    await this.call(
      'deleteVideo',
      { method: 'DELETE', path: videoPath('deleteVideo', videoId) },
      options,
    );
  }

  async getVideoStatus(videoId: string, options: CallOptions = {}): Promise<VideoStatus> {
    return this.call(
      'getVideoStatus',
      { method: 'GET', path: `${videoPath('getVideoStatus', videoId)}/status` },
      options,
    );
  }

  /** A cheap authenticated call: proves the key is accepted. */
  async checkKey(options: CallOptions = {}): Promise<void> {
    await this.call('checkKey', { method: 'GET', path: '/videos?pageSize=1' }, options);
  }

  /**
   * Sends one part. `chunks` are written to the socket as they are (no joined copy); a retry
   * re-sends the whole part, which api.video accepts.
   */
  async uploadPart(
    videoId: string,
    partNumber: number,
    isLast: boolean,
    chunks: readonly Buffer[],
    options: CallOptions = {},
  ): Promise<Video> {
    const send = (sendOptions: CallOptions) =>
      this.call<Video>(
        `uploadPart ${partNumber}`,
        {
          method: 'POST',
          path: `${videoPath(`uploadPart ${partNumber}`, videoId)}/source`,
          multipart: multipartFileBody(chunks),
          headers: { 'content-range': `part ${partNumber}/${isLast ? partNumber : '*'}` },
        },
        sendOptions,
      );
    const traces = tracing();
    if (!traces) return send(options);
    const size = chunks.reduce((n, chunk) => n + chunk.length, 0);
    return traces.part({ videoId, number: partNumber, last: isLast, size }, options, send);
  }

  /**
   * Sends one part straight from a stream, read once: no retry here (the bytes are not held), so
   * the caller's client retries the part, as api.video's uploaders do.
   */
  uploadPartStream(
    videoId: string,
    partNumber: number,
    isLast: boolean,
    file: AsyncIterable<Buffer>,
    length: number | undefined,
    options: CallOptions = {},
  ): Promise<Video> {
    const send = (body: AsyncIterable<Buffer>, sendOptions: CallOptions) =>
      this.call<Video>(
        `uploadPart ${partNumber}`,
        {
          method: 'POST',
          path: `${videoPath(`uploadPart ${partNumber}`, videoId)}/source`,
          stream: multipartStreamBody(body, length),
          headers: { 'content-range': `part ${partNumber}/${isLast ? partNumber : '*'}` },
        },
        { ...sendOptions, maxAttempts: 1 },
      );
    const traces = tracing();
    if (!traces) return send(file, options);
    // Counted only when traced: a chunk without a declared length has its size at its end.
    let bytes = 0;
    const counted = countingBytes(file, (n) => (bytes += n));
    const size = () => length ?? bytes;
    return traces.part({ videoId, number: partNumber, last: isLast, size }, options, (o) =>
      send(counted, o),
    );
  }

  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  private call<T>(
    operation: string,
    spec: Omit<Parameters<Transport['call']>[1], 'credentials' | 'signal' | 'onRetry'>,
    options: CallOptions,
  ): Promise<T> {
    return this.transport.call<T>(operation, {
      ...spec,
      credentials: this.credentials,
      ...options,
    });
  }

  private async token(path: string, json: unknown, signal?: AbortSignal): Promise<TokenAnswer> {
    try {
      return await this.transport.call<TokenAnswer>(path, { method: 'POST', path, json, signal });
    } catch (err) {
      if (path === '/auth/api-key' && err instanceof ApiVideoHttpError && err.status === 400) {
        throw new ApiVideoKeyRejectedError(400, 'authenticate');
      }
      throw err;
    }
  }
}

async function* countingBytes(
  file: AsyncIterable<Buffer>,
  seen: (bytes: number) => void,
): AsyncGenerator<Buffer> {
  for await (const chunk of file) {
    seen(chunk.length);
    yield chunk;
  }
}

/**
 * `/videos/{id}`, only for an id of api.video's shape: whatever a caller checked or forgot, a
 * client-supplied `.`, `..`, `%2e` or `/` never changes the path api.video sees.
 */
function videoPath(operation: string, videoId: string): string {
  if (!isVideoId(videoId)) throw new ApiVideoInvalidIdError(operation);
  return `/videos/${encodeURIComponent(videoId)}`;
}
