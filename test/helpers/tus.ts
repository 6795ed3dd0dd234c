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
