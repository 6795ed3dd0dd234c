// An OTLP/HTTP collector that reads what it is sent and keeps nothing, for the `traced` variant:
// the relay's cost of tracing, not a backend's. GET /stats tells how many exports came (so a run
// that exported nothing is not reported as traced). Prints {"url": …}.
import { createServer } from 'node:http';
import process from 'node:process';

let exports = 0;
let bytes = 0;
const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ exports, bytes }));
  }
  req.on('data', (c) => (bytes += c.length));
  req.on('end', () => {
    exports += 1;
    res.writeHead(200, { 'content-type': 'application/x-protobuf' });
    res.end();
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` }) + '\n');
});
