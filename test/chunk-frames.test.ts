// Chunked frames found in raw bytes (src/chunk-frames.ts): the stream relay hands on only whole
// frames, stops at the last one, and refuses bytes that are not chunked encoding.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { bodyEnd, FrameError, scanFrames } from '../src/chunk-frames.js';
import { frame } from './support/frames.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

describe('scanFrames', () => {
  const rows: { what: string; bytes: string; end: number; last: boolean; payloads?: string[] }[] = [
    { what: 'nothing yet', bytes: '', end: 0, last: false },
    { what: 'one whole frame', bytes: '5\r\nhello\r\n', end: 10, last: false, payloads: ['hello'] },
    { what: 'two frames, then half a size line', bytes: '1\r\na\r\n2\r\nbc\r\n1', end: 13, last: false, payloads: ['a', 'bc'] },
    { what: 'a frame without its closing CRLF yet', bytes: '5\r\nhello\r', end: 0, last: false },
    { what: 'a frame whose data is not all here', bytes: '1\r\na\r\n10\r\nabc', end: 6, last: false },
    { what: 'the last frame after data', bytes: '1\r\na\r\n0\r\n\r\n', end: 6, last: true },
    { what: 'the last frame before its trailer arrived', bytes: '0\r\n', end: 0, last: true },
    { what: 'upper-case hex and an extension', bytes: 'A;x=1\r\n0123456789\r\n', end: 19, last: false, payloads: ['0123456789'] },
  ];
  for (const row of rows) {
    test(row.what, () => {
      const payloads: string[] = [];
      const buf = b(row.bytes);
      const scan = scanFrames(buf, (s, e) => payloads.push(buf.toString('latin1', s, e)));
      assert.deepEqual(scan, { end: row.end, last: row.last });
      if (row.payloads) assert.deepEqual(payloads, row.payloads);
    });
  }

  for (const [what, bytes] of [['a size that is not hex', 'zz\r\nab\r\n'], ['data not followed by CRLF', '2\r\nabXY'], ['a size line ended by LF alone', '2\nab\r\n']]) {
    test(`refused: ${what}`, () => assert.throws(() => scanFrames(b(bytes!)), FrameError));
  }

  test('frame() writes what scanFrames reads', () => {
    const data = Buffer.from('data: {"x":"ünï"}\n\n');
    const f = frame(data);
    const seen: Buffer[] = [];
    assert.deepEqual(scanFrames(f, (s, e) => seen.push(f.subarray(s, e))), { end: f.length, last: false });
    assert.deepEqual(seen, [data]);
  });
});

describe('bodyEnd', () => {
  const rows: [string, string, number][] = [
    ['the last frame and its empty line', '0\r\n\r\n', 5],
    ['with an extension and a trailer', '0;x=1\r\nx-t: 1\r\n\r\n', 17],
    ['bytes after the end', '0\r\n\r\nHTTP', 5],
    ['the empty line not yet here', '0\r\n', -1],
    ['a trailer not yet ended', '0\r\nx-t: 1\r\n', -1],
  ];
  for (const [what, bytes, end] of rows) test(what, () => assert.equal(bodyEnd(b(bytes)), end));
});
