import type { VideoCreationPayload } from '../../src/apivideo/types';
import { withOwner } from '../../src/engine/owner';
import { startEmulator, type RunningEmulator } from '../../src/emulator/app';

export const TEST_API_KEY = 'test-key-7c1f9a2e5b';

export function startTestEmulator(
  options: { tokenTtlSeconds?: number } = {},
): Promise<RunningEmulator> {
  return startEmulator({ apiKey: TEST_API_KEY, ...options });
}

/** What the emulator holds for a video, deleted or not. */
export function inspectVideo(emulator: RunningEmulator, videoId: string) {
  const record = emulator.videos.inspect(videoId);
  if (!record) throw new Error(`the emulator never saw video ${videoId}`);
  return { deleted: record.deleted, input: record.input, ...record.assembly.summary() };
}

/** A creation payload marked as uploaded through the relay by `principal`. */
export function ownedBy(principal: string, payload: VideoCreationPayload): VideoCreationPayload {
  return withOwner(payload, principal);
}
