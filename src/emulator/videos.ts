import { randomBytes } from 'node:crypto';
import { SourceAssembly, type SourceSummary } from './source-assembly';

export interface VideoInput {
  title: string;
  description?: string;
  public?: boolean;
  panoramic?: boolean;
  mp4Support?: boolean;
  playerId?: string;
  tags?: string[];
  metadata?: Array<{ key: string; value: string }>;
}

export interface VideoRecord {
  videoId: string;
  input: VideoInput;
  createdAt: string;
  deleted: boolean;
  assembly: SourceAssembly;
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function newVideoId(): string {
  const bytes = randomBytes(22);
  return 'vi' + Array.from(bytes, (b) => ALPHABET[b % ALPHABET.length]).join('');
}

/** All containers ever created, deleted ones included, so a test can see what was cleaned up. */
export class VideoStore {
  private readonly videos = new Map<string, VideoRecord>();

  create(input: VideoInput): VideoRecord {
    const record: VideoRecord = {
      videoId: newVideoId(),
      input,
      createdAt: new Date().toISOString(),
      deleted: false,
      assembly: new SourceAssembly(),
    };
    this.videos.set(record.videoId, record);
    return record;
  }

  /** A live (not deleted) video, or undefined. */
  get(videoId: string): VideoRecord | undefined {
    const record = this.videos.get(videoId);
    return record && !record.deleted ? record : undefined;
  }

  /** Any video ever created, for inspection. */
  inspect(videoId: string): VideoRecord | undefined {
    return this.videos.get(videoId);
  }

  live(): VideoRecord[] {
    return [...this.videos.values()].filter((v) => !v.deleted);
  }

  all(): VideoRecord[] {
    return [...this.videos.values()];
  }

  clear(): void {
    this.videos.clear();
  }
}

/** The video object api.video answers with (the fields clients use). */
export function videoObject(record: VideoRecord): Record<string, unknown> {
  const { videoId, input, createdAt } = record;
  return {
    videoId,
    title: input.title,
    description: input.description ?? '',
    public: input.public ?? true,
    panoramic: input.panoramic ?? false,
    mp4Support: input.mp4Support ?? true,
    playerId: input.playerId ?? null,
    tags: input.tags ?? [],
    metadata: input.metadata ?? [],
    createdAt,
    updatedAt: createdAt,
    publishedAt: createdAt,
    discarded: false,
    source: { uri: `/videos/${videoId}/source` },
    assets: {
      iframe: `<iframe src="https://embed.api.video/vod/${videoId}" width="100%" height="100%" frameborder="0" scrolling="no" allowfullscreen="true"></iframe>`,
      player: `https://embed.api.video/vod/${videoId}`,
      hls: `https://vod.api.video/vod/${videoId}/hls/manifest.m3u8`,
      thumbnail: `https://vod.api.video/vod/${videoId}/thumbnail.jpg`,
      mp4: `https://vod.api.video/vod/${videoId}/mp4/source.mp4`,
    },
  };
}

export function statusObject(record: VideoRecord): Record<string, unknown> {
  const s: SourceSummary = record.assembly.summary();
  return {
    ingest: {
      status: s.completed ? 'uploaded' : s.mode === null ? null : 'uploading',
      filesize: s.size,
      receivedBytes: s.size !== null ? [{ from: 0, to: s.size - 1, total: s.size }] : [],
      receivedParts: { parts: record.assembly.receivedPartNumbers(), total: s.declaredTotal },
    },
    encoding: { playable: false, qualities: [], metadata: null },
  };
}
