// One readable line per event on stderr: `<iso time> <LEVEL> <message>`.
// The level comes from SGLANGMUX_LOG (error|warn|info|debug); RUST_LOG is honoured when it is
// unset so users of the Rust sglangmuxd keep their settings.

export type Level = 'error' | 'warn' | 'info' | 'debug';

const RANK: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };

function isLevel(s: string): s is Level {
  return s in RANK;
}

/** Reads a level from an env value such as `debug`, `WARN` or RUST_LOG's `sglangmuxd=debug,info`. */
export function parseLevel(value: string | undefined): Level | undefined {
  if (!value) return undefined;
  let found: Level | undefined;
  for (const part of value.toLowerCase().split(',')) {
    const raw = part.includes('=') ? part.slice(part.indexOf('=') + 1) : part;
    const level = raw.trim() === 'trace' ? 'debug' : raw.trim();
    if (isLevel(level)) found = level;
  }
  return found;
}

let threshold: Level =
  parseLevel(process.env.SGLANGMUX_LOG) ?? parseLevel(process.env.RUST_LOG) ?? 'info';

export function setLevel(level: Level): void {
  threshold = level;
}

// Lines are gathered and written once per turn of the event loop: written one by one (stderr to
// a file or a pipe is a synchronous write), the line per request cost a twentieth of the daemon's
// CPU at thousands of requests a second. Whatever is gathered is written at exit too.
let gathered = '';

function flush(): void {
  if (gathered === '') return;
  const lines = gathered;
  gathered = '';
  process.stderr.write(lines);
}

process.on('exit', flush);

function write(level: Level, message: string): void {
  if (RANK[level] > RANK[threshold]) return;
  if (gathered === '') setImmediate(flush);
  gathered += `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${message}\n`;
}

export const log = {
  error: (message: string): void => write('error', message),
  warn: (message: string): void => write('warn', message),
  info: (message: string): void => write('info', message),
  debug: (message: string): void => write('debug', message),
};
