/** The parts of api.video's schemas the relay reads or sends (openapi.yaml has the rest). */
export interface VideoCreationPayload {
  title: string;
  description?: string;
  public?: boolean;
  playerId?: string;
  tags?: string[];
  metadata?: Array<{ key: string; value: string }>;
}

export interface Video {
  videoId: string;
  title?: string;
  assets?: { player?: string; hls?: string; iframe?: string; thumbnail?: string; mp4?: string };
  [field: string]: unknown;
}

export interface VideoStatus {
  ingest?: {
    status?: 'uploading' | 'uploaded' | null;
    filesize?: number | null;
    receivedParts?: { parts?: number[]; total?: number | null };
  };
  encoding?: { playable?: boolean };
}
