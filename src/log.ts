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

function write(level: Level, message: string): void {
  if (RANK[level] > RANK[threshold]) return;
  process.stderr.write(`${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${message}\n`);
}

export const log = {
  error: (message: string): void => write('error', message),
  warn: (message: string): void => write('warn', message),
  info: (message: string): void => write('info', message),
  debug: (message: string): void => write('debug', message),
};
