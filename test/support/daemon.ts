// Runs the bundled daemon against simulated SGLang servers, each test in its own temp dir with
// its own ports, ledger and logs. Waits are on events (log lines, /health states) with deadlines.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort, readLedger, simPythonPath, type LedgerEvent } from './sim.js';

export { freePort };

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
/** The daemon under test: the checkout's bundle, or another build named by SGLANGMUX_TEST_BUNDLE. */
export const bundle = process.env.SGLANGMUX_TEST_BUNDLE ?? join(repoRoot, 'dist', 'sglangmux.mjs');

/** True when no process has that pid any more (`kill(pid, 0)` fails with ESRCH). */
export function pidGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export interface ModelDef {
  readonly name: string;
  readonly memorySaver?: boolean; // default true
  readonly cpuBackup?: boolean; // default true
  /** Exported in the launch script: per-model simulator knobs. */
  readonly env?: Readonly<Record<string, string>>;
  /** `exec` the server (default true); false leaves bash as the parent of the server. */
  readonly exec?: boolean;
  /** Replaces the whole sglang command line. */
  readonly command?: string;
  /** More sglang flags on the default command line (e.g. `--mem-fraction-static 0.4`). */
  readonly flags?: string;
  /** A fixed port for the model (default: a free one). */
  readonly port?: number;
}

export interface ModelInfo {
  readonly name: string;
  readonly port: number;
  readonly script: string;
}

export function launchScript(def: ModelDef, port: number): string {
  const flags = [
    def.memorySaver === false ? '' : ' --enable-memory-saver',
    def.cpuBackup === false ? '' : ' --enable-weights-cpu-backup',
  ].join('');
  const exports = Object.entries(def.env ?? {}).map(([k, v]) => `export ${k}='${v}'\n`).join('');
  const command = def.command ??
    `python3 -m sglang.launch_server --model-path sim/${def.name} --served-model-name "$MODEL_NAME" --port "$PORT"${flags}${def.flags ? ` ${def.flags}` : ''}`;
  return `#!/usr/bin/env bash\nMODEL_NAME='${def.name}'\nPORT=${port}\n${exports}${def.exec === false ? '' : 'exec '}${command}\n`;
}

/** Fast simulator defaults for tests; a test or a model's `env` may override any of them. */
export const FAST_SIM: Readonly<Record<string, string>> = {
  SGLANG_SIM_STARTUP_MS: '50',
  SGLANG_SIM_WARMUP_MS: '20',
  SGLANG_SIM_RELEASE_MS: '20',
  SGLANG_SIM_RESUME_MS: '20',
  SGLANG_SIM_RELOAD_MS: '20',
  SGLANG_SIM_TOKEN_MS: '2',
};

export interface Health {
  status: string;
  active_model: string | null;
  awake_models: string[];
  models: { id: string; state: string; port: number; gpus: number[]; gpu_share: number | null }[];
}

export interface StartOptions {
  readonly models: readonly ModelDef[];
  readonly args?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** Wait for the bootstrap-done log line (default true). */
  readonly waitBoot?: boolean;
  /** Put the scripts in `<dir>/scripts/` and pass that directory instead of the files. */
  readonly scriptDir?: boolean;
  /** Run this bundle instead of the one under test. */
  readonly bundle?: string;
}

export class Daemon {
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly watchers: { re: RegExp; from: number; resolve: () => void }[] = [];

  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly models: readonly ModelInfo[],
    readonly proc: ChildProcess,
  ) {
    const onData = (chunk: Buffer): void => {
      this.output += chunk.toString('utf8');
      for (const w of [...this.watchers]) {
        if (w.re.test(this.output.slice(w.from))) {
          this.watchers.splice(this.watchers.indexOf(w), 1);
          w.resolve();
        }
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  static async start(opts: StartOptions): Promise<Daemon> {
    const dir = mkdtempSync(join(tmpdir(), 'sglangmux-test-'));
    const port = await freePort();
    const models: ModelInfo[] = [];
    const scriptDir = opts.scriptDir ? join(dir, 'scripts') : dir;
    mkdirSync(scriptDir, { recursive: true });
    for (const def of opts.models) {
      const modelPort = def.port ?? (await freePort());
      const script = join(scriptDir, `${def.name.replace(/[^A-Za-z0-9]/g, '_')}.sh`);
      writeFileSync(script, launchScript(def, modelPort));
      models.push({ name: def.name, port: modelPort, script });
    }
    const proc = spawn(process.execPath, [
      opts.bundle ?? bundle, '--listen-port', String(port), '--log-dir', join(dir, 'logs'),
      ...(opts.args ?? []), ...(opts.scriptDir ? [scriptDir] : models.map((m) => m.script)),
    ], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        ...FAST_SIM,
        SGLANGMUX_LOG: 'debug',
        PYTHONPATH: simPythonPath(),
        // The simulator's nvidia-smi, so the daemon can see released memory really free.
        PATH: `${join(repoRoot, 'src', 'simulator', 'bin')}:${process.env.PATH ?? ''}`,
        SGLANG_SIM_LEDGER: join(dir, 'ledger.jsonl'),
        ...opts.env,
      },
    });
    const daemon = new Daemon(dir, port, models, proc);
    if (opts.waitBoot !== false) await daemon.waitLog(/bootstrap done/);
    return daemon;
  }

  /** Wraps a daemon started some other way (e.g. by an example script that execs it). */
  static attach(proc: ChildProcess, opts: { dir: string; port: number; models?: readonly ModelInfo[] }): Daemon {
    return new Daemon(opts.dir, opts.port, opts.models ?? [], proc);
  }

  /** Polls /health until the daemon answers at all (connection refused until it listens). */
  async waitListening(timeoutMs = 30_000): Promise<Health> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.health();
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`daemon not listening within ${timeoutMs} ms: ${String(err)}; output:\n${this.output}`);
      }
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new Error(`daemon exited before listening; output:\n${this.output}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get ledgerPath(): string {
    return join(this.dir, 'ledger.jsonl');
  }

  get logDir(): string {
    return join(this.dir, 'logs');
  }

  ledger(): LedgerEvent[] {
    return readLedger(this.ledgerPath);
  }

  /** Polls the simulators' ledger until an event matches. */
  async waitLedger(pred: (e: LedgerEvent) => boolean, what: string, timeoutMs = 30_000, from = 0): Promise<LedgerEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.ledger().slice(from).find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} in the ledger`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Resolves when the daemon's output, from now on, matches `re`. */
  waitLog(re: RegExp, timeoutMs = 30_000, fromStart = false): Promise<void> {
    const from = fromStart ? 0 : this.output.length;
    if (fromStart && re.test(this.output)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no log line matching ${re} within ${timeoutMs} ms; output:\n${this.output}`)), timeoutMs);
      this.watchers.push({ re, from, resolve: () => { clearTimeout(timer); resolve(); } });
      void this.exited.then(() => reject(new Error(`daemon exited while waiting for ${re}; output:\n${this.output}`)));
    });
  }

  async health(): Promise<Health> {
    const res = await fetch(`${this.url}/health`);
    return (await res.json()) as Health;
  }

  /** Polls /health until `pred` holds. */
  async waitHealth(pred: (h: Health) => boolean, what: string, timeoutMs = 30_000): Promise<Health> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const h = await this.health();
      if (pred(h)) return h;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(h)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  state(h: Health, model: string): string | undefined {
    return h.models.find((m) => m.id === model)?.state;
  }

  post(path: string, body: unknown, init: RequestInit = {}): Promise<Response> {
    return fetch(`${this.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
      ...init,
    });
  }

  /** A non-streaming chat request; returns status and parsed JSON. */
  async chat(model: string, maxTokens = 4): Promise<{ status: number; body: ChatBody }> {
    const res = await this.post('/v1/chat/completions', {
      model, max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }],
    });
    return { status: res.status, body: (await res.json()) as ChatBody };
  }

  /** SIGTERM and wait for the exit. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    return this.exited;
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface ChatBody {
  choices?: { message?: { content?: string }; text?: string }[];
  error?: { message: string; type: string; param: string | null; code: string | number | null };
}

/** Parses SSE text into its `data:` payloads. */
export function sseData(text: string): string[] {
  return text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice('data: '.length));
}

/** A daemon for a suite of tests: started before them and handed to `set`, stopped and its files
 * removed after them. */
export function useDaemon(set: (d: Daemon) => void, opts: StartOptions): void {
  let d: Daemon | undefined;
  before(async () => {
    d = await Daemon.start(opts);
    set(d);
  });
  after(async () => {
    await d?.stop();
    d?.cleanup();
  });
}
