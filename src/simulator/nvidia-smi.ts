// A stand-in for `nvidia-smi` over the simulators' shared ledger (bundled to
// dist/sim-nvidia-smi.mjs, run by src/simulator/bin/nvidia-smi). It answers the query sglangmux
// makes, `--query-gpu=timestamp,index,memory.used,memory.total --format=csv,noheader,nounits` (any of those
// fields, in any order), once or in a loop (`-lms N` / `--loop-ms=N`, `-l N` / `--loop=N` in seconds), so the daemon's wait for released
// memory to be really free (SGLANG-FACTS hazard 4) runs against the simulator too. One GPU, index 0.
import { closeSync, openSync, readSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import type { LedgerEvent } from './events.js';
import { usedBy, usedNow } from './ledger.js';

const argv = process.argv.slice(2);
const ledger = process.env.SGLANG_SIM_LEDGER;
const FIELDS = ['timestamp', 'index', 'memory.used', 'memory.total'] as const;
/** The simulated GPU's size: the simulators' SGLANG_SIM_GPU_MB (same default). */
const totalMb = Number(process.env.SGLANG_SIM_GPU_MB ?? '') || 1000;
type Field = (typeof FIELDS)[number];
const fields = /--query-gpu=(\S+)/.exec(argv.join(' '))?.[1]?.split(',') ?? [];
const isField = (f: string): f is Field => (FIELDS as readonly string[]).includes(f);
if (!fields.includes('memory.used') || !fields.every(isField) || !argv.includes('--format=csv,noheader,nounits')) {
  process.stderr.write('sglang simulator: this nvidia-smi answers only --query-gpu= with timestamp, index, memory.used, memory.total, and --format=csv,noheader,nounits\n');
  process.exit(2);
}

/** nvidia-smi's timestamp format, local time: `2026/11/27 10:20:01.123`. */
function timestamp(d: Date): string {
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${d.getFullYear()}/${p(d.getMonth() + 1)}/${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** The loop period in ms asked for, or null for a single answer. */
function loopMs(): number | null {
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = Number(inline ?? argv[i + 1]);
    if (flag === '-lms' || flag === '--loop-ms') return value;
    if (flag === '-l' || flag === '--loop') return value * 1000;
  }
  return null;
}

function print(mb: number): void {
  const value: Record<Field, string> = { timestamp: timestamp(new Date()), index: '0', 'memory.used': String(Math.round(mb)), 'memory.total': String(totalMb) };
  process.stdout.write(`${fields.map((f) => value[f as Field]).join(', ')}\n`);
}

/** In a loop, the ledger is followed: only its new lines are read at each sample, and only the
 * memory events are kept (a soak's ledger grows by thousands of request lines). */
class LedgerFollower {
  private offset = 0;
  private partial = '';
  private readonly decoder = new StringDecoder('utf8');
  private readonly memory: LedgerEvent[] = [];

  constructor(private readonly path: string) {}

  used(): number {
    this.readNew();
    return usedBy(this.memory, Date.now());
  }

  private readNew(): void {
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch {
      return; // not written yet
    }
    try {
      const buf = Buffer.alloc(1 << 16);
      for (let n; (n = readSync(fd, buf, 0, buf.length, this.offset)) > 0;) {
        this.offset += n;
        const lines = (this.partial + this.decoder.write(buf.subarray(0, n))).split('\n');
        this.partial = lines.pop() ?? '';
        for (const line of lines) {
          // A cheap filter before parsing: the ledger writes compact JSON (JSON.stringify).
          if (!line.includes('"event":"alloc"') && !line.includes('"event":"free"')) continue;
          try {
            this.memory.push(JSON.parse(line) as LedgerEvent);
          } catch {
            // not a ledger line: nothing to count
          }
        }
      }
    } finally {
      closeSync(fd);
    }
  }
}

const period = loopMs();
if (period === null) {
  print(ledger ? usedNow(ledger) : 0);
} else {
  if (!(period > 0)) {
    process.stderr.write('sglang simulator: nvidia-smi loop period must be a positive number\n');
    process.exit(2);
  }
  const follower = ledger ? new LedgerFollower(ledger) : null;
  const sample = (): void => print(follower?.used() ?? 0);
  // Like the real one: runs until killed, and dies of EPIPE once nobody reads it.
  process.stdout.on('error', () => process.exit(0));
  sample();
  setInterval(sample, period);
}
