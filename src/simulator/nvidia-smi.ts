// A stand-in for `nvidia-smi` over the simulators' shared ledger (bundled to
// dist/sim-nvidia-smi.mjs, run by src/simulator/bin/nvidia-smi). It answers the query sglangmux
// makes, `--query-gpu=[index,]memory.used --format=csv,noheader,nounits`, once or in a loop
// (`-lms N` / `--loop-ms=N`, `-l N` / `--loop=N` in seconds), so the daemon's wait for released
// memory to be really free (SGLANG-FACTS hazard 4) runs against the simulator too. One GPU, index 0.
import { closeSync, openSync, readSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import type { LedgerEvent } from './events.js';
import { usedBy, usedNow } from './ledger.js';

const argv = process.argv.slice(2);
const ledger = process.env.SGLANG_SIM_LEDGER;
const query = /--query-gpu=((?:index,)?memory\.used)\b/.exec(argv.join(' '));
if (!query) {
  process.stderr.write('sglang simulator: this nvidia-smi answers only --query-gpu=[index,]memory.used --format=csv,noheader,nounits\n');
  process.exit(2);
}
const withIndex = query[1].startsWith('index,');

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
  process.stdout.write(withIndex ? `0, ${Math.round(mb)}\n` : `${Math.round(mb)}\n`);
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
          if (!line.includes('"event":"alloc"') && !line.includes('"event":"free"')) continue;
          this.memory.push(JSON.parse(line) as LedgerEvent);
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
