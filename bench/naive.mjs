// What tutorials do: multer writes the upload to a temporary file, then the official client
// uploads that file to api.video (here: the sink). Env: SINK_URL. Prints {"url": …}.
import { mkdtempSync, rmSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import ApiVideoClient from '@api.video/nodejs-client';
import express from 'express';
import multer from 'multer';

const dir = mkdtempSync(join(tmpdir(), 'bench-naive-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
process.on('SIGTERM', () => process.exit(0));
const client = new ApiVideoClient({ apiKey: 'bench', baseUri: process.env.SINK_URL });
const upload = multer({ dest: dir });
const app = express();
app.post('/v1/videos', upload.single('file'), async (req, res) => {
  try {
    const video = await client.videos.create({ title: req.body.title ?? 'naive' });
    const done = await client.videos.upload(video.videoId, req.file.path);
    res.status(201).json(done);
  } catch (err) {
    res.status(502).json({ error: String(err) });
  } finally {
    await unlink(req.file.path).catch(() => undefined);
  }
});
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` }) + '\n');
});
