// Launch scripts are run with `bash <script>` but read here as TEXT, never executed, so reading
// the configuration can't start a server or depend on the environment.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { type Placement, PlacementError, placementOf, wholeNumber } from './placement.js';
import { SGLANG_FLAGS } from './sglang-api.js';

export interface ModelSpec {
  /** The OpenAI model id clients send in `model`. */
  readonly name: string;
  readonly port: number;
  /** Absolute path of the launch script. */
  readonly script: string;
  /** `--model-path`/`--model` as written, when literal; the server is asked when it isn't. */
  readonly modelPath: string | null;
  /** `--enable-memory-saver`: the server can release and resume its GPU memory. */
  readonly memorySaver: boolean;
  /** `--enable-weights-cpu-backup`: weights survive a release, no reload from disk needed. */
  readonly cpuBackup: boolean;
  /** `--api-key` of the model server (`$VAR` resolved): sent on every call to it that is not
   * a control call, forwarded requests included. */
  readonly apiKey: string | null;
  /** `--admin-api-key` (`$VAR` resolved): once set, SGLang opens its control routes (flush,
   * pause, release, resume, reload) only to this key. */
  readonly adminApiKey: string | null;
  /** `--dp-size`: data-parallel ranks (1 when absent). */
  readonly dpSize: number;
  /** Its GPUs and its share of each (CUDA_VISIBLE_DEVICES, --tp-size, --base-gpu-id,
   * --mem-fraction-static). */
  readonly placement: Placement;
  /** `--quantization` / `--load-format` as written: some make a reload from disk unreliable. */
  readonly quantization: string | null;
  readonly loadFormat: string | null;
  /** Hash of the script's text: a reload restarts the model when it changes. */
  readonly digest: string;
}

export class ScriptError extends Error {
  constructor(readonly script: string, problem: string) {
    super(`${script}: ${problem}`);
    this.name = 'ScriptError';
  }
}

/** Characters outside [A-Za-z0-9_-] become `_`, so no model name can write outside the log dir. */
export function sanitizeName(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, '_');
}

/** `VAR=value` with optional `export `, quotes and a trailing comment; first match wins. */
function assignment(lines: string[], variable: string): string | undefined {
  const re = new RegExp(`^\\s*(?:export\\s+)?${variable}=(.*)$`);
  for (const line of lines) {
    const m = re.exec(line);
    if (!m) continue;
    const rest = m[1]!;
    const quoted = /^(['"])(.*?)\1/.exec(rest);
    if (quoted) return quoted[2]!;
    return rest.replace(/\s+#.*$/, '').trim().split(/\s+/)[0] ?? '';
  }
  return undefined;
}

/** Shell-like words of the non-comment text, with line continuations joined. */
function words(text: string): string[] {
  const joined = text.replace(/\\\r?\n/g, ' ');
  const out: string[] = [];
  for (const line of joined.split(/\r?\n/)) {
    const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(#.*$)|([^\s"'#]+(?:#[^\s]*)?)/g;
    let m: RegExpExecArray | null;
    let word = '';
    let last = -1;
    while ((m = re.exec(line)) !== null) {
      if (m[3] !== undefined) break; // a comment ends the line
      const piece = m[1] ?? m[2] ?? m[4] ?? '';
      // Adjacent pieces (`--x="a"b`) belong to one word.
      if (last === m.index) word += piece;
      else {
        if (last !== -1) out.push(word);
        word = piece;
      }
      last = re.lastIndex;
    }
    if (last !== -1) out.push(word);
  }
  return out;
}

/** The value of `--flag v` or `--flag=v` among the words; first match wins. */
function flagValue(ws: string[], flags: readonly string[]): string | undefined {
  for (let i = 0; i < ws.length; i++) {
    const w = ws[i]!;
    for (const f of flags) {
      if (w === f && i + 1 < ws.length) return ws[i + 1];
      if (w.startsWith(`${f}=`)) return w.slice(f.length + 1);
    }
  }
  return undefined;
}

const literal = (v: string | undefined): string | undefined =>
  v === undefined || v === '' || v.includes('$') ? undefined : v;

/** A key flag's value with `$VAR` / `${VAR}` expanded as bash would when running the script: from
 * a literal assignment in the script, else from the environment the script runs with. An unset
 * variable is an error: the server would start with a key sglangmux cannot know. */
function expandKey(script: string, flag: string, value: string | undefined, lines: string[], env: NodeJS.ProcessEnv): string | null {
  if (value === undefined) return null;
  const expanded = value.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_m, braced?: string, bare?: string) => {
    const variable = (braced ?? bare)!;
    const assigned = assignment(lines, variable);
    const v = assigned !== undefined && !assigned.includes('$') ? assigned : env[variable];
    if (v === undefined || v === '') {
      throw new ScriptError(script, `${flag} uses $${variable}, which is not set in the environment sglangmux runs the script with; export it before starting sglangmux`);
    }
    return v;
  });
  if (expanded.includes('$')) throw new ScriptError(script, `${flag} uses shell expansion sglangmux cannot evaluate; use $VAR, \${VAR} or a literal`);
  return expanded === '' ? null : expanded;
}

/** Reads a launch script's settings. `env` is the environment the script will run with: key
 * flags may name variables from it. */
export function parseLaunchScript(script: string, text: string, env: NodeJS.ProcessEnv = {}): ModelSpec {
  const lines = text.split(/\r?\n/);
  const ws = words(text);
  const assignedName = assignment(lines, 'MODEL_NAME');
  const assignedPort = assignment(lines, 'PORT');
  for (const [variable, value] of [['MODEL_NAME', assignedName], ['PORT', assignedPort]] as const) {
    if (value !== undefined && value.includes('$')) {
      throw new ScriptError(script, `${variable}=${value} uses shell expansion, which sglangmux does not evaluate; write the value literally`);
    }
  }
  const modelPath = literal(flagValue(ws, SGLANG_FLAGS.modelPath));
  const name = literal(assignedName) ?? literal(flagValue(ws, SGLANG_FLAGS.servedName)) ?? modelPath;
  if (!name) {
    throw new ScriptError(script, 'no model name (add a MODEL_NAME=<id> line or --served-model-name)');
  }
  if (name.includes(':')) {
    // SGLang reads `base:adapter` in a request's model as a LoRA adapter, and refuses such names.
    throw new ScriptError(script, `model name '${name}' contains ':', which SGLang reads as a LoRA adapter (base:adapter); choose a name without ':'`);
  }
  const portText = literal(assignedPort) ?? literal(flagValue(ws, SGLANG_FLAGS.port));
  if (portText === undefined) throw new ScriptError(script, 'no port (add a PORT=<port> line or --port)');
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
    throw new ScriptError(script, `invalid port '${portText}'`);
  }
  let dp: number;
  let placement: Placement;
  try {
    const dpText = flagValue(ws, SGLANG_FLAGS.dpSize);
    placement = placementOf({
      // Not set in the script, it is inherited from the environment the script runs with.
      visibleDevices: assignment(lines, 'CUDA_VISIBLE_DEVICES') ?? env.CUDA_VISIBLE_DEVICES,
      tpSize: flagValue(ws, SGLANG_FLAGS.tpSize),
      dpSize: dpText,
      dpAttention: SGLANG_FLAGS.dpAttention.some((f) => ws.includes(f)),
      baseGpuId: flagValue(ws, SGLANG_FLAGS.baseGpuId),
      memFraction: flagValue(ws, SGLANG_FLAGS.memFraction),
    });
    // Unreadable (shell expansion), it counts as 1 until the server's /server_info tells.
    dp = dpText !== undefined && /[$`]/.test(dpText) ? 1 : wholeNumber('--dp-size', dpText, 1, 1);
  } catch (err) {
    if (err instanceof PlacementError) throw new ScriptError(script, err.message);
    throw err;
  }
  return {
    name,
    port,
    script,
    modelPath: modelPath ?? null,
    memorySaver: SGLANG_FLAGS.memorySaver.some((f) => ws.includes(f)),
    cpuBackup: SGLANG_FLAGS.cpuBackup.some((f) => ws.includes(f)),
    apiKey: expandKey(script, '--api-key', flagValue(ws, SGLANG_FLAGS.apiKey), lines, env),
    adminApiKey: expandKey(script, '--admin-api-key', flagValue(ws, SGLANG_FLAGS.adminApiKey), lines, env),
    dpSize: dp,
    placement,
    quantization: literal(flagValue(ws, SGLANG_FLAGS.quantization)) ?? null,
    loadFormat: literal(flagValue(ws, SGLANG_FLAGS.loadFormat)) ?? null,
    digest: createHash('sha256').update(text).digest('hex'),
  };
}

/** What in a script makes update_weights_from_disk untrustworthy: it supports only the default
 * loader, and reloads of FP8 checkpoints (compressed-tensors, blockwise) corrupt or crash. */
export function reloadRisk(spec: ModelSpec): string | null {
  if (spec.loadFormat !== null && spec.loadFormat !== 'auto') return `--load-format ${spec.loadFormat}`;
  if (spec.quantization !== null && /fp8|compressed|modelopt|w8a8/i.test(spec.quantization)) return `--quantization ${spec.quantization}`;
  return null;
}

/** The scripts named on the command line; a directory stands for its `*.sh` files, sorted, so
 * a reload (SIGHUP) picks up scripts added to or removed from it. */
export function expandScriptArgs(args: readonly string[]): string[] {
  return args.flatMap((arg) => {
    let isDir = false;
    try {
      isDir = statSync(arg).isDirectory();
    } catch {
      return [arg]; // reported as unreadable by loadLaunchScripts
    }
    if (!isDir) return [arg];
    return readdirSync(arg).filter((f) => f.endsWith('.sh')).sort().map((f) => `${arg.replace(/\/+$/, '')}/${f}`);
  });
}

/** Reads and checks every script; throws ScriptError naming the first script with a problem. */
export function loadLaunchScripts(args: readonly string[], listenPort: number, env: NodeJS.ProcessEnv = {}): ModelSpec[] {
  const paths = expandScriptArgs(args);
  if (paths.length === 0) throw new ScriptError(args.join(' '), 'no launch scripts (*.sh) found');
  const specs: ModelSpec[] = [];
  for (const path of paths) {
    const script = resolve(path);
    let text: string;
    try {
      text = readFileSync(script, 'utf8');
    } catch (err) {
      throw new ScriptError(path, `cannot read launch script (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
    const spec = parseLaunchScript(script, text, env);
    const sameName = specs.find((s) => s.name === spec.name);
    if (sameName) throw new ScriptError(path, `model name '${spec.name}' is also used by ${basename(sameName.script)}`);
    const samePort = specs.find((s) => s.port === spec.port);
    if (samePort) throw new ScriptError(path, `port ${spec.port} is also used by ${basename(samePort.script)}`);
    if (spec.port === listenPort) throw new ScriptError(path, `port ${spec.port} is the listen port of sglangmux`);
    specs.push(spec);
  }
  return specs;
}
