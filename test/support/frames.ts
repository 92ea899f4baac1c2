// A chunked transfer-encoding frame built by hand, for tests that feed or check raw frames.

const CR = 0x0d;
const LF = 0x0a;

/** One data frame carrying `payload` (not empty: a frame of size 0 ends the body). */
export function frame(payload: Buffer): Buffer {
  const size = payload.length.toString(16);
  const out = Buffer.allocUnsafe(size.length + payload.length + 4);
  out.write(size, 0, 'latin1');
  let at = size.length;
  out[at++] = CR;
  out[at++] = LF;
  at += payload.copy(out, at);
  out[at++] = CR;
  out[at] = LF;
  return out;
}
