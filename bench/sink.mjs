// A fast stand-in for api.video's part protocol: it hashes what it receives (parts in order, held
// only while ahead of a gap) and nothing more, so its CPU does not hide the relay's.
// Env: SINK_DELAY_MS answers each part that much later (a slow upstream). Prints {"url": …}.
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import process from 'node:process';
import busboy from 'busboy';

const delayMs = Number(process.env.SINK_DELAY_MS ?? 0);
const videos = new Map();

function json(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function video(id) {
  return { videoId: id, title: 'bench', assets: { player: `https://embed.api.video/vod/${id}` } };
}

function readFile(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    const parser = busboy({ headers: req.headers });
    parser.on('file', (_name, stream) => stream.on('data', (c) => chunks.push(c)));
    parser.on('close', () => resolve(chunks));
    parser.on('error', reject);
    req.pipe(parser);
  });
}

function fold(v) {
  for (let next = v.ahead.get(v.next); next; next = v.ahead.get(v.next)) {
    v.ahead.delete(v.next);
    for (const c of next) {
      v.hash.update(c);
      v.size += c.length;
    }
    v.next += 1;
  }
  if (v.total !== null && v.next > v.total) v.sha256 = v.hash.digest('hex');
}

async function source(req, res, id) {
  const v = videos.get(id);
  const range = req.headers['content-range'];
  const chunks = await readFile(req);
  const m = /^part (\d+)\/(\d+|\*)$/.exec(range ?? '');
  const number = m ? Number(m[1]) : 1;
  if (!m || m[2] !== '*') v.total = m ? Number(m[2]) : 1;
  v.ahead.set(number, chunks);
  fold(v);
  if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
  json(res, 201, video(id));
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://sink');
  const parts = url.pathname.split('/').filter(Boolean);
  if (req.method === 'POST' && url.pathname === '/videos') {
    req.resume();
    const id = 'vi' + randomBytes(11).toString('hex');
    videos.set(id, {
      hash: createHash('sha256'),
      size: 0,
      next: 1,
      total: null,
      ahead: new Map(),
      sha256: null,
    });
    return req.on('end', () => json(res, 201, video(id)));
  }
  if (req.method === 'POST' && parts[0] === 'videos' && parts[2] === 'source') {
    return void source(req, res, parts[1]).catch((err) =>
      json(res, 400, { title: err.message, status: 400 }),
    );
  }
  if (req.method === 'GET' && url.pathname === '/videos')
    return json(res, 200, { data: [], pagination: {} });
  if (req.method === 'GET' && parts[0] === '_sink') {
    const v = videos.get(parts[2]);
    return json(res, v ? 200 : 404, v ? { size: v.size, sha256: v.sha256 } : {});
  }
  if (req.method === 'DELETE') return void (res.writeHead(204), res.end());
  json(res, 404, { title: 'not found', status: 404 });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` }) + '\n');
});
