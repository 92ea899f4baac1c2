// A stand-in for `nvidia-smi` over the simulators' shared ledger (bundled to
// dist/sim-nvidia-smi.mjs, run by src/simulator/bin/nvidia-smi). It answers the query sglangmux
// makes, `--query-gpu=timestamp,index,memory.used,memory.total --format=csv,noheader,nounits` (any of those
// fields, in any order), once or in a loop (`-lms N` / `--loop-ms=N`, `-l N` / `--loop=N` in seconds), so the daemon's wait for released
// memory to be really free (SGLANG-FACTS hazard 4) runs against the simulator too. One line per
// GPU of the simulated host (SGLANG_SIM_GPUS, index 0 up), as the real one prints them.
import { closeSync, openSync, readSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import type { LedgerEvent } from './events.js';
import { readKnobs } from './knobs.js';
import { usedBy, usedNow, type UsageByGpu } from './ledger.js';

const argv = process.argv.slice(2);
const ledger = process.env.SGLANG_SIM_LEDGER;
const FIELDS = ['timestamp', 'index', 'memory.used', 'memory.total'] as const;
/** The simulated host as the simulators see it: SGLANG_SIM_GPUS GPUs of SGLANG_SIM_GPU_MB each. */
const host = ((): { gpus: number; gpuMb: number } => {
  try {
    return readKnobs(process.env);
  } catch (e) {
    process.stderr.write(`sglang simulator: ${(e as Error).message}\n`);
    process.exit(2);
  }
})();
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

/** One sample: a line per GPU, all with the same timestamp. */
function print(usage: UsageByGpu): void {
  const at = timestamp(new Date());
  let out = '';
  for (let gpu = 0; gpu < host.gpus; gpu++) {
    const value: Record<Field, string> = { timestamp: at, index: String(gpu), 'memory.used': String(Math.round(usage.get(gpu) ?? 0)), 'memory.total': String(host.gpuMb) };
    out += `${fields.map((f) => value[f as Field]).join(', ')}\n`;
  }
  process.stdout.write(out);
}

/** In a loop, the ledger is followed: only its new lines are read at each sample, and only the
 * memory events are kept (a soak's ledger grows by thousands of request lines). */
class LedgerFollower {
  private offset = 0;
  private partial = '';
  private readonly decoder = new StringDecoder('utf8');
  private readonly memory: LedgerEvent[] = [];

  constructor(private readonly path: string) {}

  used(): UsageByGpu {
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
  print(ledger ? usedNow(ledger) : new Map());
} else {
  if (!(period > 0)) {
    process.stderr.write('sglang simulator: nvidia-smi loop period must be a positive number\n');
    process.exit(2);
  }
  const follower = ledger ? new LedgerFollower(ledger) : null;
  const sample = (): void => print(follower?.used() ?? new Map());
  // Like the real one: runs until killed, and dies of EPIPE once nobody reads it.
  process.stdout.on('error', () => process.exit(0));
  sample();
  setInterval(sample, period);
}
