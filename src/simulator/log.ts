// SGLang-looking log lines: SGLang's own logger prints "[time] message", uvicorn's lines carry
// "INFO:     ". Writes are synchronous (writeSync) so lines printed right before a crash or exit
// are never lost, and a closed pipe (EPIPE) never takes the simulator down.
import { writeSync } from 'node:fs';

function stamp(): string {
  const d = new Date();
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function write(fd: number, text: string): void {
  try {
    writeSync(fd, text);
  } catch {
    // Reader went away; logging must not crash the server.
  }
}

/** An SGLang logger line on stdout: "[2026-01-01 10:00:00] message". */
export function info(msg: string): void {
  write(1, `[${stamp()}] ${msg}\n`);
}

/** A uvicorn line on stdout: "[2026-01-01 10:00:00] INFO:     message". */
export function uvicorn(msg: string): void {
  write(1, `[${stamp()}] INFO:     ${msg}\n`);
}

/** A warning on stderr. */
export function warn(msg: string): void {
  write(2, `[${stamp()}] WARNING: ${msg}\n`);
}

/** An error on stderr. */
export function error(msg: string): void {
  write(2, `[${stamp()}] ERROR:    ${msg}\n`);
}

/** Raw lines on stderr (tracebacks). */
export function stderr(text: string): void {
  write(2, text.endsWith('\n') ? text : `${text}\n`);
}
