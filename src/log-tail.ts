// `tail -n N -F` of a log file: its last lines, then each line appended after them, by polling
// the file (simple, and it sees truncation and rotation: a smaller size or another inode starts
// over at the beginning of the new file).
import { open, stat } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';

/** Never read more than this backwards for the first lines (a log with huge lines). */
const MAX_TAIL_BYTES = 8 * 1024 * 1024;
/** At most this much per poll while following, so a burst is sent in pieces. */
const MAX_READ_BYTES = 1024 * 1024;
const CHUNK = 64 * 1024;

export interface TailOptions {
  /** How many existing lines to deliver first. */
  readonly lines: number;
  readonly pollMs: number;
  readonly onLine: (line: string) => void;
}

interface FilePos {
  offset: number;
  ino: number | null;
}

const clean = (line: string): string => line.replace(/\r/g, '');

async function statOrNull(path: string): Promise<{ size: number; ino: number } | null> {
  try {
    const s = await stat(path);
    return { size: s.size, ino: s.ino };
  } catch {
    return null; // not created yet, or being rotated
  }
}

/** The last `n` complete lines of the file, and the position just after them. */
async function lastLines(path: string, n: number): Promise<{ lines: string[]; pos: FilePos }> {
  let file;
  try {
    file = await open(path, 'r');
  } catch {
    return { lines: [], pos: { offset: 0, ino: null } };
  }
  try {
    const { size, ino } = await file.stat();
    // Read backwards until n+1 newlines are seen (or the start of the file).
    const parts: Buffer[] = [];
    let start = size;
    let newlines = 0;
    while (start > 0 && newlines <= n && size - start < MAX_TAIL_BYTES) {
      const len = Math.min(CHUNK, start);
      start -= len;
      const buf = Buffer.alloc(len);
      await file.read(buf, 0, len, start);
      parts.unshift(buf);
      for (const byte of buf) if (byte === 0x0a) newlines++;
    }
    const data = Buffer.concat(parts);
    const end = data.lastIndexOf(0x0a) + 1; // a partial last line is delivered once complete
    const lines = end === 0 ? [] : data.subarray(0, end - 1).toString('utf8').split('\n');
    // Unless the read reached the file's start, the first piece may be the middle of a line (it
    // is one more than needed otherwise: n+1 newlines were seen).
    if (start > 0) lines.shift();
    return { lines: n === 0 ? [] : lines.slice(-n).map(clean), pos: { offset: start + end, ino } };
  } finally {
    await file.close();
  }
}

/**
 * Delivers the last lines of `path`, then follows it. Resolves once those last lines were
 * delivered (so any line written after that is delivered as new), with the function that stops
 * the following.
 */
export async function tailFile(path: string, opts: TailOptions): Promise<() => void> {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let decoder = new StringDecoder('utf8');
  let carry = '';
  const { lines, pos: at } = await lastLines(path, opts.lines);
  let pos: FilePos = at;

  const poll = async (): Promise<void> => {
    const s = await statOrNull(path);
    if (stopped || !s) return;
    if ((pos.ino !== null && s.ino !== pos.ino) || s.size < pos.offset) {
      // Truncated or replaced (rotation): the new file is read from its start.
      pos = { offset: 0, ino: s.ino };
      decoder = new StringDecoder('utf8');
      carry = '';
    }
    pos.ino = s.ino;
    if (s.size <= pos.offset) return;
    const len = Math.min(s.size - pos.offset, MAX_READ_BYTES);
    const buf = Buffer.alloc(len);
    const file = await open(path, 'r');
    let got = 0;
    try {
      ({ bytesRead: got } = await file.read(buf, 0, len, pos.offset));
    } finally {
      await file.close();
    }
    pos.offset += got;
    const fresh = (carry + decoder.write(buf.subarray(0, got))).split('\n');
    carry = fresh.pop() ?? '';
    for (const line of fresh) {
      if (stopped) return;
      opts.onLine(clean(line));
    }
  };

  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      poll().catch(() => {}).finally(schedule);
    }, opts.pollMs);
  };

  for (const line of lines) opts.onLine(line);
  schedule();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}
