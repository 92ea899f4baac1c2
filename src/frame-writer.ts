// The client half of the stream relay: whole chunked-encoding frames (as the model server sent
// them, or as framed here) go to the client's socket as they are, in one write each run. Going
// through ServerResponse.write would decode nothing but frame each piece again, in four pieces
// behind a cork uncorked on the next tick: this is one buffer, one write system call, no tick
// (bench/RESULTS.md).
import type { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { scanFrames } from './chunk-frames.js';

export interface FrameWriter {
  /** Writes whole data frames. False when the client's socket buffer is full: wait for
   * `drains` to emit 'drain'. */
  write(frames: Buffer): boolean;
  readonly drains: EventEmitter;
}

/**
 * A writer for a response whose head is sent. Frames go to the socket only while ServerResponse
 * itself uses chunked encoding and holds nothing unsent; otherwise (an HTTP/1.0 client gets no
 * chunked encoding) their data is written through ServerResponse. The response's own end()
 * writes the last frame.
 */
export function frameWriter(res: ServerResponse): FrameWriter {
  const socket = res.socket;
  if (!res.headersSent || !res.chunkedEncoding || socket === null || res.writableLength > socket.writableLength) {
    return {
      write: (frames) => {
        let ok = true;
        scanFrames(frames, (start, end) => {
          ok = res.write(frames.subarray(start, end)) && ok;
        });
        return ok;
      },
      drains: res,
    };
  }
  return { write: (frames) => socket.write(frames), drains: socket };
}
