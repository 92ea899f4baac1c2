// Process supervision for one model: `bash <script>` in its own process group, output appended
// to per-model log files, and a stop that takes the whole group down (grandchildren of a script
// that does not `exec` its server included).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { sanitizeName, type ModelSpec } from './launch-script.js';
import { log } from './log.js';

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** True when sglangmux asked for the exit (stop); false when the process ended on its own. */
  readonly requested: boolean;
}

export function describeExit(info: ExitInfo): string {
  return info.signal ? `killed by ${info.signal}` : `exited with code ${info.code}`;
}

const GROUP_POLL_MS = 50;

/** Every live process group, so an exiting daemon can kill them synchronously. */
const liveGroups = new Set<number>();
process.on('exit', () => {
  for (const pgid of liveGroups) signalGroup(pgid, 'SIGKILL');
});

function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false; // ESRCH: the group is gone
  }
}

const groupAlive = (pgid: number): boolean => signalGroup(pgid, 0 as unknown as NodeJS.Signals);

export class ModelProcess {
  readonly stdoutLog: string;
  readonly stderrLog: string;
  private child: ChildProcess | null = null;
  private stopping = false;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    private readonly spec: ModelSpec,
    logDir: string,
    private readonly env: NodeJS.ProcessEnv,
    private readonly onExit: (info: ExitInfo) => void,
  ) {
    const base = `${sanitizeName(spec.name)}_${spec.port}`;
    this.stdoutLog = join(logDir, `${base}.stdout.log`);
    this.stderrLog = join(logDir, `${base}.stderr.log`);
    mkdirSync(logDir, { recursive: true });
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** True from start until the script's own process and every process left in its group have exited. */
  get running(): boolean {
    return this.child !== null;
  }

  start(): void {
    if (this.child) throw new Error(`${this.spec.name} is already running`);
    const out = openSync(this.stdoutLog, 'a');
    const err = openSync(this.stderrLog, 'a');
    const banner = `\n=== sglangmux: starting ${this.spec.script} at ${new Date().toISOString()} ===\n`;
    writeSync(out, banner);
    writeSync(err, banner);
    let child: ChildProcess;
    try {
      child = spawn('bash', [this.spec.script], {
        detached: true, // its own process group, so the whole tree can be signalled at once
        stdio: ['ignore', out, err],
        env: { ...this.env, MODEL_NAME: this.spec.name, PORT: String(this.spec.port) },
      });
    } finally {
      closeSync(out);
      closeSync(err);
    }
    const pgid = child.pid;
    if (pgid === undefined) throw new Error(`cannot start bash for ${this.spec.script}`);
    this.child = child;
    this.stopping = false;
    liveGroups.add(pgid);
    log.info(`model ${this.spec.name}: starting ${this.spec.script} (pid ${pgid}, port ${this.spec.port})`);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        const requested = this.stopping;
        // Leftovers of a script that did not exec its server (or a server's own subprocesses)
        // must not outlive it. The model counts as running until they are gone, so that a
        // restart cannot meet its port or its GPU memory still taken.
        void this.reapGroup(pgid).then(() => {
          liveGroups.delete(pgid);
          this.child = null;
          this.onExit({ code, signal, requested });
          resolve();
        });
      });
    });
  }

  /** Stops the whole process group: SIGTERM, then SIGKILL after the grace period. */
  async stop(graceMs: number): Promise<void> {
    const child = this.child;
    if (child?.pid !== undefined) {
      this.stopping = true;
      log.info(`model ${this.spec.name}: stopping process group ${child.pid}`);
      signalGroup(child.pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (child.pid !== undefined) signalGroup(child.pid, 'SIGKILL');
      }, graceMs);
      await this.exited;
      clearTimeout(timer);
    } else {
      await this.exited;
    }
  }

  /** Waits until no process of the group is left, escalating to SIGKILL. */
  private async reapGroup(pgid: number): Promise<void> {
    if (!groupAlive(pgid)) return;
    signalGroup(pgid, 'SIGTERM');
    for (let waited = 0; groupAlive(pgid); waited += GROUP_POLL_MS) {
      if (waited >= 5000) {
        signalGroup(pgid, 'SIGKILL');
        if (waited >= 10_000) return; // unkillable (zombies only): give up waiting
      }
      await new Promise((r) => setTimeout(r, GROUP_POLL_MS));
    }
  }
}
