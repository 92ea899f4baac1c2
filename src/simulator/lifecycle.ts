// How the process ends. Every catchable end (signal, crash, injected fault, normal exit) goes
// through process.exit, whose 'exit' handler writes the free and exit events synchronously, so
// the ledger never leaks memory. SIGKILL cannot be caught: the next simulator to take the ledger
// lock gives that memory back instead (see Ledger.usage).
import type { HazardReason } from './events.js';
import type { Ledger } from './ledger.js';
import * as log from './log.js';

const HAZARD_NUMBER: Record<HazardReason, number> = {
  release_while_running: 1,
  forward_while_released: 2,
  resume_not_released: 3,
  reload_while_released: 2,
};

let exitReason = 'exit';

export function installExitHandlers(ledger: Ledger): void {
  process.on('exit', (code) => {
    try {
      ledger.freeAll(exitReason);
      ledger.record('exit', { code, reason: exitReason });
    } catch {
      // an unwritable ledger must not turn an exit into a hang
    }
  });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      log.uvicorn('Shutting down');
      exitReason = signal;
      process.exit(0);
    });
  }
}

/** A hazard killed the server: ledger event, Python-like traceback, immediate exit. Open
 * connections drop without an answer, as they do when SGLang's scheduler dies. */
export function crash(ledger: Ledger, reason: HazardReason, where: string, exception: string): never {
  ledger.record('crash', { reason, hazard: HAZARD_NUMBER[reason] });
  log.error('Scheduler hit an exception: Traceback (most recent call last):');
  log.stderr(`  File "sglang/srt/managers/scheduler.py", line 1, in ${where}\n${exception}`);
  log.error('Received sigquit from a child process. It usually means the child failed.');
  exitReason = `crash:${reason}`;
  process.exit(1);
}

/** An injected fault (SGLANG_SIM_* knob) ends the process. Not a hazard: no crash event. */
export function faultExit(ledger: Ledger, fault: string, code: number, message: string): never {
  ledger.record('fault', { fault });
  log.error(message);
  exitReason = `fault:${fault}`;
  process.exit(code);
}
