// Chunked transfer-encoding frames (`<hex size>[;ext]\r\n<data>\r\n`, the last one of size 0),
// found in raw bytes without decoding them: the stream relay passes whole frames from the model
// server's socket to the client's untouched, and needs only to know where they end.

/** Where the complete data frames at the start of a buffer end. */
export interface FrameScan {
  /** Bytes of complete data frames from the start of `buf`. */
  readonly end: number;
  /** The last frame starts at `end` (complete or not: nothing after it is data). */
  readonly last: boolean;
}

/** A frame that cannot be chunked encoding: the answer is broken. */
export class FrameError extends Error {
  constructor(problem: string) {
    super(`invalid chunked encoding from the model server: ${problem}`);
    this.name = 'FrameError';
  }
}

const CR = 0x0d;
const LF = 0x0a;
/** A size line longer than this is not one (16 hex digits and an extension are far less). */
const MAX_SIZE_LINE = 1024;

/** Finds the complete data frames at the start of `buf`; `onPayload`, when given, is told
 * where each one's data lies. Throws FrameError on bytes that are not chunked encoding. */
export function scanFrames(buf: Buffer, onPayload?: (start: number, end: number) => void): FrameScan {
  let at = 0;
  for (;;) {
    const lineEnd = buf.indexOf(LF, at);
    if (lineEnd < 0) {
      if (buf.length - at > MAX_SIZE_LINE) throw new FrameError('a chunk size line without its end');
      return { end: at, last: false };
    }
    if (lineEnd === at || buf[lineEnd - 1] !== CR) throw new FrameError('a chunk size line not ended by CRLF');
    const size = chunkSize(buf, at, lineEnd - 1);
    if (size === 0) return { end: at, last: true };
    const dataStart = lineEnd + 1;
    const frameEnd = dataStart + size + 2;
    if (frameEnd > buf.length) return { end: at, last: false };
    if (buf[frameEnd - 2] !== CR || buf[frameEnd - 1] !== LF) throw new FrameError('chunk data not followed by CRLF');
    onPayload?.(dataStart, frameEnd - 2);
    at = frameEnd;
  }
}

const TRAILER_END = Buffer.from('\r\n\r\n');

/** Where a chunked body ends, given the bytes from its last frame on (`0` and its size line,
 * trailer lines if any, then an empty line): the offset just past it, or -1 while it has not
 * all come. */
export function bodyEnd(fromLast: Buffer): number {
  const at = fromLast.indexOf(TRAILER_END);
  return at < 0 ? -1 : at + TRAILER_END.length;
}

/** The hex size at the start of a size line (an extension after `;` is allowed and ignored). */
function chunkSize(buf: Buffer, start: number, end: number): number {
  let size = 0;
  let i = start;
  for (; i < end; i++) {
    const c = buf[i]!;
    const digit = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
    if (digit < 0) break;
    size = size * 16 + digit;
    if (size > Number.MAX_SAFE_INTEGER / 16) throw new FrameError('a chunk size too large');
  }
  if (i === start || (i < end && buf[i] !== 0x3b && buf[i] !== 0x20 && buf[i] !== 0x09)) {
    throw new FrameError(`chunk size '${buf.toString('latin1', start, Math.min(end, start + 20))}'`);
  }
  return size;
}
