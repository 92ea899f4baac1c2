// Launch scripts are run with `bash <script>` but read here as TEXT, never executed, so reading
// the configuration can't start a server or depend on the environment.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';

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
  /** `--api-key` of the model server, used for the daemon's own calls to it. */
  readonly apiKey: string | null;
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
function flagValue(ws: string[], flags: string[]): string | undefined {
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

export function parseLaunchScript(script: string, text: string): ModelSpec {
  const lines = text.split(/\r?\n/);
  const ws = words(text);
  const assignedName = assignment(lines, 'MODEL_NAME');
  const assignedPort = assignment(lines, 'PORT');
  for (const [variable, value] of [['MODEL_NAME', assignedName], ['PORT', assignedPort]] as const) {
    if (value !== undefined && value.includes('$')) {
      throw new ScriptError(script, `${variable}=${value} uses shell expansion, which sglangmux does not evaluate; write the value literally`);
    }
  }
  const modelPath = literal(flagValue(ws, ['--model-path', '--model']));
  const name = literal(assignedName) ?? literal(flagValue(ws, ['--served-model-name'])) ?? modelPath;
  if (!name) {
    throw new ScriptError(script, 'no model name (add a MODEL_NAME=<id> line or --served-model-name)');
  }
  const portText = literal(assignedPort) ?? literal(flagValue(ws, ['--port']));
  if (portText === undefined) throw new ScriptError(script, 'no port (add a PORT=<port> line or --port)');
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
    throw new ScriptError(script, `invalid port '${portText}'`);
  }
  return {
    name,
    port,
    script,
    modelPath: modelPath ?? null,
    memorySaver: ws.includes('--enable-memory-saver'),
    cpuBackup: ws.includes('--enable-weights-cpu-backup'),
    apiKey: literal(flagValue(ws, ['--api-key'])) ?? null,
    digest: createHash('sha256').update(text).digest('hex'),
  };
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
export function loadLaunchScripts(args: readonly string[], listenPort: number): ModelSpec[] {
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
    const spec = parseLaunchScript(script, text);
    const sameName = specs.find((s) => s.name === spec.name);
    if (sameName) throw new ScriptError(path, `model name '${spec.name}' is also used by ${basename(sameName.script)}`);
    const samePort = specs.find((s) => s.port === spec.port);
    if (samePort) throw new ScriptError(path, `port ${spec.port} is also used by ${basename(samePort.script)}`);
    if (spec.port === listenPort) throw new ScriptError(path, `port ${spec.port} is the listen port of sglangmux`);
    specs.push(spec);
  }
  return specs;
}
