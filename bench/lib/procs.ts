// The processes a benchmark run drives: sglangmux (with simulated SGLang servers behind launch
// scripts, exactly as a user runs it), nginx as a plain reverse proxy, and /proc sampling of
// their CPU time and memory. Everything listens on 127.0.0.1 in a temp dir of its own; every
// process started here is stopped by its pid (also when the harness exits on an error).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, closeSync, constants, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { delimiter, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { freePort, simPythonPath } from '../../test/support/sim.js';

const started = new Set<ChildProcess>();
const running = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null && child.pid !== undefined;

// If the harness exits with processes still running (an error), SIGTERM them: sglangmux then
// stops its model servers itself, nginx shuts down.
process.on('exit', () => {
  for (const child of started) {
    if (!running(child)) continue;
    try {
      process.kill(child.pid!, 'SIGTERM');
    } catch {
      // already gone
    }
  }
});

/** Stops every process this harness started (SIGTERM, SIGKILL after `graceMs`) and waits. */
export async function stopAll(graceMs = 12_000): Promise<void> {
  const live = [...started].filter(running);
  await Promise.all(live.map((child) => new Promise<void>((resolve) => {
    if (!running(child)) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  })));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


/** GET a path; resolves with status and body, rejects on a connection error. */
export function get(port: number, path: string, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

// ---------------------------------------------------------------------------------------------
// sglangmux and its simulated models

export interface ModelDef {
  readonly name: string;
  /** SGLANG_SIM_* knobs exported by this model's launch script. */
  readonly knobs: Readonly<Record<string, string>>;
}

/** A launch script as a user writes one; `python3 -m sglang.launch_server` runs the simulator. */
function launchScript(name: string, port: number, knobs: Readonly<Record<string, string>>): string {
  const exports = Object.entries(knobs).map(([k, v]) => `export ${k}='${v}'\n`).join('');
  return `#!/usr/bin/env bash\nMODEL_NAME='${name}'\nPORT=${port}\n${exports}` +
    `exec python3 -m sglang.launch_server --model-path sim/${name} --served-model-name "$MODEL_NAME" --port "$PORT" ` +
    '--enable-memory-saver --enable-weights-cpu-backup\n';
}

/** This environment without sglangmux's and the simulator's variables (the caller's must not leak in). */
function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('SGLANG_SIM_') && !k.startsWith('SGLANGMUX_') && k !== 'RUST_LOG' && k !== 'NODE_OPTIONS') env[k] = v;
  }
  env['PYTHONPATH'] = [simPythonPath(), process.env['PYTHONPATH']].filter((p) => p !== undefined && p !== '').join(':');
  env['SGLANG_SIM_NODE'] = process.execPath;
  return env;
}

export interface DaemonOptions {
  readonly bundle: string;
  readonly dir: string;
  readonly models: readonly ModelDef[];
  readonly args?: readonly string[];
  /** Extra node flags for the daemon (e.g. --cpu-prof). */
  readonly nodeArgs?: readonly string[];
  /** Path of the simulators' shared ledger (none by default: it costs a file write per request). */
  readonly ledger?: string;
  /** Put the simulator's nvidia-smi (over the ledger) first on the daemon's PATH. */
  readonly nvidiaSmi?: boolean;
}

/** The directory holding the simulator's `nvidia-smi`. */
export function simBinDir(): string {
  return join(simPythonPath(), '..', 'bin');
}

export interface ModelInfo {
  readonly name: string;
  readonly port: number;
}

export class MuxDaemon {
  readonly exited: Promise<void>;

  private constructor(
    readonly proc: ChildProcess,
    readonly port: number,
    readonly models: readonly ModelInfo[],
    readonly logPath: string,
    /** performance.now() right before spawn. */
    readonly spawnedAt: number,
  ) {
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  static async start(opts: DaemonOptions): Promise<MuxDaemon> {
    mkdirSync(opts.dir, { recursive: true });
    const port = await freePort();
    const models: ModelInfo[] = [];
    const scripts: string[] = [];
    for (const def of opts.models) {
      const modelPort = await freePort();
      const script = join(opts.dir, `${def.name}.sh`);
      writeFileSync(script, launchScript(def.name, modelPort, def.knobs));
      models.push({ name: def.name, port: modelPort });
      scripts.push(script);
    }
    const logPath = join(opts.dir, 'sglangmux.log');
    const log = openSync(logPath, 'a');
    const env = baseEnv();
    env['SGLANGMUX_LOG'] = 'info';
    if (opts.ledger) env['SGLANG_SIM_LEDGER'] = opts.ledger;
    if (opts.nvidiaSmi) env['PATH'] = `${simBinDir()}${delimiter}${env['PATH'] ?? ''}`;
    const spawnedAt = performance.now();
    const proc = spawn(process.execPath, [
      ...(opts.nodeArgs ?? []), opts.bundle,
      '--listen-port', String(port), '--log-dir', join(opts.dir, 'logs'), ...(opts.args ?? []), ...scripts,
    ], { cwd: opts.dir, stdio: ['ignore', log, log], env });
    closeSync(log);
    started.add(proc);
    proc.once('exit', () => started.delete(proc));
    return new MuxDaemon(proc, port, models, logPath, spawnedAt);
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Polls /health every `everyMs` until it answers; returns performance.now() of that answer. */
  async waitListening(timeoutMs = 30_000, everyMs = 2): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        await get(this.port, '/health');
        return performance.now();
      } catch {
        if (!this.running) throw new Error(`sglangmux exited before listening; see ${this.logPath}:\n${this.logTail()}`);
        if (performance.now() > deadline) throw new Error(`sglangmux not listening within ${timeoutMs} ms:\n${this.logTail()}`);
      }
      await sleep(everyMs);
    }
  }

  /** Waits until every model has started (one awake, the others asleep). */
  async waitBooted(timeoutMs = 60_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        const h = JSON.parse((await get(this.port, '/health')).body) as { active_model: string | null; models: { state: string }[] };
        if (h.active_model !== null && h.models.every((m) => m.state === 'awake' || m.state === 'asleep')) return;
      } catch {
        // not listening yet
      }
      if (!this.running) throw new Error(`sglangmux exited during start:\n${this.logTail()}`);
      if (performance.now() > deadline) throw new Error(`models not started within ${timeoutMs} ms:\n${this.logTail()}`);
      await sleep(20);
    }
  }

  log(): string {
    try {
      return readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  logTail(): string {
    return this.log().split('\n').slice(-30).join('\n');
  }

  /** The pid of each model's server (the launch script execs it: a child of the daemon). */
  modelPids(): number[] {
    return childrenOf(this.pid);
  }

  async stop(): Promise<void> {
    if (this.running) this.proc.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (this.running) this.proc.kill('SIGKILL');
    }, 15_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Pids whose parent is `pid` (scans /proc). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// nginx

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** nginx from NGINX_BIN, PATH, or /usr/sbin (not on a non-root PATH on Debian); null if absent. */
export function findNginx(): string | null {
  const explicit = process.env['NGINX_BIN'];
  if (explicit) return executable(explicit) ? explicit : null;
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin'];
  for (const dir of dirs) {
    if (dir !== '' && executable(join(dir, 'nginx'))) return join(dir, 'nginx');
  }
  return null;
}

/** nginx as a plain reverse proxy: keep-alive HTTP/1.1 upstream, no buffering, no access log.
 * One worker, like the daemon's one event loop. */
export function nginxConfig(dir: string, listenPort: number, upstreamPort: number, workers: number): string {
  const p = (name: string): string => join(dir, name);
  return `# Written by sglangmux's bench/ for one run; not the system nginx.
worker_processes ${workers};
daemon off;
master_process on;
pid ${p('nginx.pid')};
lock_file ${p('nginx.lock')};
error_log ${p('error.log')} warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; multi_accept on; }
http {
  access_log off;
  client_body_temp_path ${p('client_body')};
  proxy_temp_path ${p('proxy')};
  fastcgi_temp_path ${p('fastcgi')};
  uwsgi_temp_path ${p('uwsgi')};
  scgi_temp_path ${p('scgi')};
  upstream sim {
    server 127.0.0.1:${upstreamPort};
    keepalive 512;
    keepalive_requests 100000;
    keepalive_timeout 4s;
  }
  server {
    listen 127.0.0.1:${listenPort} backlog=1024;
    keepalive_requests 100000;
    keepalive_timeout 60s;
    client_max_body_size 32m;
    location / {
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 120s;
    }
  }
}
`;
}

export class Nginx {
  readonly exited: Promise<void>;

  private constructor(readonly proc: ChildProcess, readonly port: number, readonly dir: string) {
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  static async start(bin: string, dir: string, upstreamPort: number, workers = 1): Promise<Nginx> {
    mkdirSync(dir, { recursive: true });
    // As root the workers run as an unprivileged user: they must be able to reach the temp dirs.
    if (process.getuid?.() === 0) chmodSync(dir, 0o755);
    const port = await freePort();
    const conf = join(dir, 'nginx.conf');
    writeFileSync(conf, nginxConfig(dir, port, upstreamPort, workers));
    const out = openSync(join(dir, 'nginx.out'), 'a');
    // -e: the error log before the config is read (the compiled-in one may not be writable).
    const proc = spawn(bin, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { stdio: ['ignore', out, out] });
    closeSync(out);
    started.add(proc);
    proc.once('exit', () => started.delete(proc));
    const nginx = new Nginx(proc, port, dir);
    const deadline = performance.now() + 10_000;
    for (;;) {
      try {
        await get(port, '/get_model_info');
        return nginx;
      } catch {
        if (proc.exitCode !== null || performance.now() > deadline) {
          await nginx.stop();
          let errors = '';
          try {
            errors = readFileSync(join(dir, 'error.log'), 'utf8') + readFileSync(join(dir, 'nginx.out'), 'utf8');
          } catch {
            // nothing written
          }
          throw new Error(`nginx did not start:\n${errors}`);
        }
      }
      await sleep(10);
    }
  }

  /** The worker processes (children of the master). */
  workerPids(): number[] {
    return childrenOf(this.pid);
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** "nginx/1.22.1" from `nginx -v` (which prints on stderr). */
export function nginxVersionOf(bin: string): string {
  const r = spawnSync(bin, ['-v'], { encoding: 'utf8' });
  return `${r.stderr ?? ''}${r.stdout ?? ''}`.replace(/^nginx version:\s*/, '').trim();
}

// ---------------------------------------------------------------------------------------------
// /proc sampling

let clkTck = 0;
function ticksPerSecond(): number {
  if (clkTck === 0) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** CPU seconds (user + system) a process has used so far; NaN if it is gone. From the
 * scheduler's own count in nanoseconds (`/proc/<pid>/schedstat`, the same time utime + stime
 * report in 10 ms ticks: a smoke run's nginx can stay below one tick), else from `stat`. */
export function cpuSeconds(pid: number): number {
  try {
    const ns = Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
    if (Number.isFinite(ns)) return ns / 1e9;
  } catch {
    // no schedstat (kernel without CONFIG_SCHED_INFO), or the process is gone: try stat
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond();
  } catch {
    return Number.NaN;
  }
}

/** Resident set size in MB (VmRSS); NaN if the process is gone. */
export function rssMb(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Jiffies of the whole machine (all cores), from /proc/stat: process time (user, nice, system),
 * interrupt time (irq, softirq: loopback TCP is largely processed there) and steal (a VM's
 * host gave the core to someone else). */
interface MachineTicks {
  readonly proc: number;
  readonly irq: number;
  readonly steal: number;
}

function machineTicks(): MachineTicks {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const at = (i: number): number => v[i] ?? 0;
  return { proc: at(0) + at(1) + at(2), irq: at(5) + at(6), steal: at(7) };
}

export interface CpuWindow {
  /** CPU use of each named process over the window, in % of one core. */
  readonly cpuPct: Record<string, number>;
  /** Highest RSS seen per named process, MB. */
  readonly maxRssMb: Record<string, number>;
  /** The whole machine's busy time over the window, in % of one core (200 % = both cores of two). */
  readonly machinePct: number;
  /** Of which: process time (user + system) of all processes, interrupt time, steal. */
  readonly machineProcPct: number;
  readonly machineIrqPct: number;
  readonly machineStealPct: number;
  readonly seconds: number;
}

/** Samples named processes' CPU time and RSS between start() and stop(). The harness's own
 * process is included as `generator` (process.cpuUsage). */
export class ProcSampler {
  private t0 = 0;
  private cpu0: Record<string, number> = {};
  private gen0 = process.cpuUsage();
  private machine0: MachineTicks = { proc: 0, irq: 0, steal: 0 };
  private readonly maxRss: Record<string, number> = {};
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly pids: Record<string, number[]>, private readonly everyMs = 100) {}

  start(): void {
    this.t0 = performance.now();
    this.cpu0 = this.cpuNow();
    this.gen0 = process.cpuUsage();
    this.machine0 = machineTicks();
    this.sampleRss();
    this.timer = setInterval(() => this.sampleRss(), this.everyMs);
  }

  stop(): CpuWindow {
    if (this.timer) clearInterval(this.timer);
    this.sampleRss();
    const seconds = (performance.now() - this.t0) / 1000;
    const cpu1 = this.cpuNow();
    const cpuPct: Record<string, number> = {};
    for (const name of Object.keys(this.pids)) cpuPct[name] = (100 * (cpu1[name]! - this.cpu0[name]!)) / seconds;
    const gen = process.cpuUsage(this.gen0);
    cpuPct['generator'] = (100 * (gen.user + gen.system) / 1e6) / seconds;
    const m1 = machineTicks();
    const pct = (k: keyof MachineTicks): number => (100 * (m1[k] - this.machine0[k])) / ticksPerSecond() / seconds;
    const [machineProcPct, machineIrqPct, machineStealPct] = [pct('proc'), pct('irq'), pct('steal')];
    return {
      cpuPct, maxRssMb: { ...this.maxRss }, machinePct: machineProcPct + machineIrqPct + machineStealPct,
      machineProcPct, machineIrqPct, machineStealPct, seconds,
    };
  }

  private cpuNow(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, pids] of Object.entries(this.pids)) {
      out[name] = pids.reduce((sum, pid) => sum + (cpuSeconds(pid) || 0), 0);
    }
    return out;
  }

  private sampleRss(): void {
    for (const [name, pids] of Object.entries(this.pids)) {
      const rss = pids.reduce((sum, pid) => sum + (rssMb(pid) || 0), 0);
      this.maxRss[name] = Math.max(this.maxRss[name] ?? 0, rss);
    }
  }
}

/** Waits until the machine is quiet (busy below `thresholdPct` of one core over two consecutive
 * `windowMs` windows), at most `maxMs`. The benchmark's own processes are idle between runs, so
 * what is busy then is someone else. Returns how long it waited and whether it got quiet. */
export async function waitQuiet(maxMs: number, thresholdPct = 20, windowMs = 500): Promise<{ waitedMs: number; quiet: boolean }> {
  const t0 = performance.now();
  let calm = 0;
  while (performance.now() - t0 < maxMs) {
    const a = machineTicks();
    await sleep(windowMs);
    const b = machineTicks();
    const busy = (100 * (b.proc + b.irq + b.steal - a.proc - a.irq - a.steal)) / ticksPerSecond() / (windowMs / 1000);
    calm = busy < thresholdPct ? calm + 1 : 0;
    if (calm >= 2) return { waitedMs: performance.now() - t0, quiet: true };
  }
  return { waitedMs: performance.now() - t0, quiet: maxMs <= 0 };
}

/** CPU used by processes other than the given ones (and this one) over a span: start() before,
 * otherPct(pids) after, while those processes still run (their whole CPU time counts, so they
 * must have started within the span). In % of one core. */
export class ForeignLoad {
  private readonly m0 = machineTicks();
  private readonly g0 = process.cpuUsage();
  private readonly t0 = performance.now();

  otherPct(pids: readonly number[]): number {
    const seconds = (performance.now() - this.t0) / 1000;
    const m1 = machineTicks();
    const machine = (m1.proc - this.m0.proc) / ticksPerSecond();
    const gen = process.cpuUsage(this.g0);
    const ours = pids.reduce((sum, pid) => sum + (cpuSeconds(pid) || 0), 0) + (gen.user + gen.system) / 1e6;
    return (100 * (machine - ours)) / seconds;
  }
}
