// A stand-in for `nvidia-smi` over the simulators' shared ledger (bundled to
// dist/sim-nvidia-smi.mjs, run by src/simulator/bin/nvidia-smi). It answers the one query
// sglangmux makes, `--query-gpu=memory.used --format=csv,noheader,nounits`, so the daemon's wait
// for released memory to be really free (SGLANG-FACTS hazard 4) runs against the simulator too.
import { usedNow } from './ledger.js';

const args = process.argv.slice(2).join(' ');
const ledger = process.env.SGLANG_SIM_LEDGER;
if (!/--query-gpu=memory\.used\b/.test(args)) {
  process.stderr.write('sglang simulator: this nvidia-smi answers only --query-gpu=memory.used --format=csv,noheader,nounits\n');
  process.exit(2);
}
process.stdout.write(`${Math.round(ledger ? usedNow(ledger) : 0)}\n`);
