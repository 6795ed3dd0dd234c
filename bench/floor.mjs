// The parsing floor: a server that parses the multipart body with busboy and drains the file.
// No busboy-based relay can cost less CPU than this. Prints {"url": …}.
import { createServer } from 'node:http';
import process from 'node:process';
import busboy from 'busboy';

const server = createServer((req, res) => {
  let bytes = 0;
  const parser = busboy({ headers: req.headers });
  parser.on('file', (_name, stream) => stream.on('data', (c) => (bytes += c.length)));
  parser.on('close', () => {
    res.writeHead(201, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ bytes }));
  });
  req.pipe(parser);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` }) + '\n');
});
