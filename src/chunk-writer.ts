// The client half of the stream relay: each upstream chunk (one SSE event) goes to the client's
// socket as one chunked-encoding frame in one write. ServerResponse.write would frame it as four
// pieces behind a cork, uncorked on the next tick as one writev; this is one buffer, one write
// system call, no tick: the part of the per-event cost that is ours to shape (bench/RESULTS.md).
import type { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';

export interface ChunkWriter {
  /** False when the client's socket buffer is full: wait for `drains` to emit 'drain'. */
  write(chunk: Buffer): boolean;
  readonly drains: EventEmitter;
}

const CRLF = 0x0d0a;

/**
 * A writer for a response whose head is sent. Frames on the socket only while ServerResponse
 * itself frames chunks and holds nothing unsent (an HTTP/1.0 client gets no chunked encoding):
 * otherwise it is ServerResponse.write. The response's own end() writes the last chunk.
 */
export function chunkWriter(res: ServerResponse): ChunkWriter {
  const socket = res.socket;
  if (!res.headersSent || !res.chunkedEncoding || socket === null || res.writableLength > socket.writableLength) {
    return { write: (chunk) => res.write(chunk), drains: res };
  }
  return {
    write: (chunk) => {
      if (chunk.length === 0) return true; // a zero-length frame would end the body
      const size = chunk.length.toString(16);
      const frame = Buffer.allocUnsafe(size.length + chunk.length + 4);
      frame.write(size, 0, 'latin1');
      let at = frame.writeUInt16BE(CRLF, size.length);
      at += chunk.copy(frame, at);
      frame.writeUInt16BE(CRLF, at);
      return socket.write(frame);
    },
    drains: socket,
  };
}
