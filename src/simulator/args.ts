// Command line of `python -m sglang.launch_server`. Only the flags that change the simulation are
// read; every other --flag (SGLang has hundreds) is accepted and ignored, so real launch scripts
// run unchanged.
import { readFileSync } from 'node:fs';

export interface SimArgs {
  modelPath: string;
  servedName: string;
  port: number;
  host: string;
  memorySaver: boolean;
  cpuBackup: boolean;
  memFractionStatic: number | null;
  apiKey: string | null;
  /** --admin-api-key: once set, only it opens the control routes. */
  adminApiKey: string | null;
  /** --dp-size: data-parallel ranks, each with its own scheduler. */
  dpSize: number;
  /** --tp-size: tensor-parallel ranks, one GPU each. */
  tpSize: number;
  /** --enable-dp-attention: the data-parallel ranks run inside the tensor-parallel GPUs. */
  dpAttention: boolean;
  /** --base-gpu-id: the first CUDA device of rank 0. */
  baseGpuId: number;
  /** --load-format: update_weights_from_disk supports only the default loader. */
  loadFormat: string;
  /** Flags accepted but not simulated, for the startup log. */
  ignored: string[];
}

/** A bad command line: argparse prints usage and exits 2. */
export class UsageError extends Error {}

const VALUE_FLAGS = new Set([
  '--model-path',
  '--served-model-name',
  '--port',
  '--host',
  '--mem-fraction-static',
  '--api-key',
  '--admin-api-key',
  '--dp-size',
  '--tp-size',
  '--base-gpu-id',
  '--load-format',
  '--config',
]);
const BOOL_FLAGS = new Set(['--enable-memory-saver', '--enable-weights-cpu-backup', '--enable-dp-attention']);
/** Other spellings SGLang accepts: argparse's aliases and the unique prefixes scripts use. */
const ALIASES: Record<string, string> = {
  '--model': '--model-path',
  '--tp': '--tp-size',
  '--tensor-parallel-size': '--tp-size',
  '--dp': '--dp-size',
  '--data-parallel-size': '--dp-size',
};

/** `--config file.yaml`: SGLang merges `key: value` lines (flag names, `_` or `-`) into the
 * command line. Only flat scalars are read, enough to hide a flag from the script's text. */
function configArgs(path: string, readFile: (p: string) => string): string[] {
  const out: string[] = [];
  for (const line of readFile(path).split(/\r?\n/)) {
    const m = /^\s*([A-Za-z0-9_-]+)\s*:\s*(.*?)\s*$/.exec(line.replace(/\s#.*$/, ''));
    if (!m) continue;
    const flag = `--${m[1]!.replace(/_/g, '-')}`;
    const value = m[2]!.replace(/^(['"])(.*)\1$/, '$2');
    if (value === 'true' || value === 'True') out.push(flag);
    else if (value !== 'false' && value !== 'False' && value !== '') out.push(flag, value);
  }
  return out;
}

function intAtLeast(min: number, flag: string, text: string): number {
  const n = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || n < min) throw new UsageError(`argument ${flag}: invalid int value: '${text}'`);
  return n;
}
const positiveInt = (flag: string, text: string): number => intAtLeast(1, flag, text);
const nonNegativeInt = (flag: string, text: string): number => intAtLeast(0, flag, text);

export function parseArgs(argvIn: readonly string[], readFile: (p: string) => string = (p) => readFileSync(p, 'utf8')): SimArgs {
  const values = new Map<string, string>();
  const bools = new Set<string>();
  const ignored: string[] = [];
  // The config file's settings come first: flags on the command line win.
  const at = argvIn.findIndex((t) => t === '--config' || t.startsWith('--config='));
  const configPath = at < 0 ? undefined : argvIn[at]!.startsWith('--config=') ? argvIn[at]!.slice(9) : argvIn[at + 1];
  const argv = configPath === undefined ? argvIn : [...configArgs(configPath, readFile), ...argvIn];

  for (let i = 0; i < argv.length; i++) {
    const token = argv[i] ?? '';
    if (!token.startsWith('--')) throw new UsageError(`unrecognized arguments: ${token}`);
    const eq = token.indexOf('=');
    const written = eq >= 0 ? token.slice(0, eq) : token;
    const name = ALIASES[written] ?? written;
    const inline = eq >= 0 ? token.slice(eq + 1) : null;
    const next = argv[i + 1];
    // A following token that is not itself a flag is this flag's value (e.g. "--tp 1").
    const takeNext = (): string | null => {
      if (next === undefined || next.startsWith('--')) return null;
      i++;
      return next;
    };

    if (VALUE_FLAGS.has(name)) {
      const value = inline ?? takeNext();
      if (value === null) throw new UsageError(`argument ${name}: expected one argument`);
      values.set(name, value);
    } else if (BOOL_FLAGS.has(name)) {
      if (inline !== null) throw new UsageError(`argument ${name}: ignored explicit argument '${inline}'`);
      bools.add(name);
    } else {
      const value = inline ?? takeNext();
      ignored.push(value === null ? name : `${name}=${value}`);
    }
  }

  const modelPath = values.get('--model-path');
  if (modelPath === undefined || modelPath === '') {
    throw new UsageError('the following arguments are required: --model-path');
  }
  const port = Number(values.get('--port') ?? '30000');
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`argument --port: invalid int value: '${values.get('--port') ?? ''}'`);
  }
  const fractionText = values.get('--mem-fraction-static');
  const memFractionStatic = fractionText === undefined ? null : Number(fractionText);
  if (memFractionStatic !== null && !Number.isFinite(memFractionStatic)) {
    throw new UsageError(`argument --mem-fraction-static: invalid float value: '${fractionText ?? ''}'`);
  }

  return {
    modelPath,
    servedName: values.get('--served-model-name') ?? modelPath,
    port,
    host: values.get('--host') ?? '127.0.0.1',
    memorySaver: bools.has('--enable-memory-saver'),
    cpuBackup: bools.has('--enable-weights-cpu-backup'),
    memFractionStatic,
    apiKey: values.get('--api-key') ?? null,
    adminApiKey: values.get('--admin-api-key') ?? null,
    dpSize: positiveInt('--dp-size', values.get('--dp-size') ?? '1'),
    tpSize: positiveInt('--tp-size', values.get('--tp-size') ?? '1'),
    dpAttention: bools.has('--enable-dp-attention'),
    baseGpuId: nonNegativeInt('--base-gpu-id', values.get('--base-gpu-id') ?? '0'),
    loadFormat: values.get('--load-format') ?? 'auto',
    ignored,
  };
}
