import { Upload, type UploadOptions } from 'tus-js-client';

export interface TusResult {
  url: string;
  videoId: string | undefined;
}

/** Uploads `data` with tus-js-client; resolves with the upload URL and the Upload-Video-Id header. */
export function tusUpload(
  endpoint: string,
  data: Buffer,
  options: Partial<UploadOptions> & { onUrl?: (url: string) => void; abortAfter?: number } = {},
): Promise<TusResult> {
  return new Promise((resolve, reject) => {
    const upload: Upload = new Upload(data, {
      endpoint,
      metadata: { filename: 'clip.mp4', title: 'tus' },
      retryDelays: [0, 200, 500, 1000, 2000, 3000],
      removeFingerprintOnSuccess: true,
      ...options,
      onError: (err) => reject(err),
      onSuccess: (payload) =>
        resolve({ url: upload.url!, videoId: payload.lastResponse.getHeader('Upload-Video-Id') }),
      onUploadUrlAvailable: () => options.onUrl?.(upload.url!),
    });
    upload.start();
  });
}

/**
 * tus-js-client as it ships: nothing changed but where to upload and who is uploading (its default
 * `retryDelays`, first retry at 0 ms). Resolves with the video's id.
 */
export function shippedTusClient(endpoint: string, data: Buffer, bearer: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const upload = new Upload(data, {
      endpoint,
      headers: { Authorization: `Bearer ${bearer}` },
      metadata: { filename: 'clip.mp4' },
      onError: reject,
      onSuccess: (payload) => resolve(payload.lastResponse.getHeader('Upload-Video-Id')!),
    });
    upload.start();
  });
}
