import { multipartFileBody } from '../../src/apivideo/part-body';

test('the body is the relay’s own chunks between a preamble and an epilogue, with the exact length', () => {
  const chunks = [Buffer.from('hello '), Buffer.from('world')];
  const part = multipartFileBody(chunks);
  const pieces = [...part.body()];
  expect(pieces.slice(1, -1)).toHaveLength(2);
  expect(pieces[1]).toBe(chunks[0]); // the same objects: nothing copied
  expect(pieces[2]).toBe(chunks[1]);
  expect(part.contentLength).toBe(Buffer.concat(pieces).length);
  const boundary = /boundary=(.+)$/.exec(part.contentType)![1];
  expect(Buffer.concat(pieces).toString()).toBe(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="source"\r\nContent-Type: application/octet-stream\r\n\r\nhello world\r\n--${boundary}--\r\n`,
  );
});

test('each call gives a fresh iterable, so a retry re-sends the same bytes', () => {
  const part = multipartFileBody([Buffer.from('x')]);
  expect(Buffer.concat([...part.body()])).toEqual(Buffer.concat([...part.body()]));
});
