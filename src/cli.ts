// The command line, compatible with the Rust sglangmuxd: same flags, defaults and exit codes
// (2 for a usage or configuration error, with a one-line message and a usage hint). yargs splits
// the command line; the values are checked here, so that an error names what the user typed.
import yargs from 'yargs';
import { helpWidth, renderHelp, type HelpOption, type HelpPage } from './help.js';
import { VERSION } from './version.js';

export interface Options {
  readonly host: string;
  readonly listenPort: number;
  readonly upstreamTimeoutSecs: number;
  readonly modelReadyTimeoutSecs: number;
  readonly modelSwitchTimeoutSecs: number;
  /** null: automatic (from the measured switch cost, docs/scheduling.md). */
  readonly minActiveSecs: number | null;
  readonly idleSleepSecs: number | null;
  readonly lazy: boolean;
  /** The share of each GPU the models awake on it may declare together. */
  readonly gpuMemoryBudget: number;
  readonly logDir: string;
  readonly scripts: readonly string[];
  // Auth, CORS and keepalive (README: "Auth, metrics and control").
  /** --api-key or SGLANGMUX_API_KEY: bearer token for inference routes; null: open. */
  readonly apiKey: string | null;
  /** --admin-api-key or SGLANGMUX_ADMIN_API_KEY: bearer token for /admin/ and /metrics. */
  readonly adminApiKey: string | null;
  readonly corsOrigins: readonly string[];
  /** 0: no keepalive comments while a stream waits. */
  readonly sseKeepaliveSecs: number;
}

export const USAGE = 'sglangmux [options] <launch-script>...';

/** The help's sections, in this order; each option names its own. */
const GROUPS = ['Serving', 'Timeouts and scheduling', 'Security', 'Logging', 'Other'] as const;

interface OptionSpec extends HelpOption {
  readonly group: (typeof GROUPS)[number];
  /** May be given more than once (all values count); any other option only once. */
  readonly repeatable?: boolean;
}

/** Every option, in the help's order within its group. A default is applied as if typed. */
const OPTIONS: readonly OptionSpec[] = [
  { flag: 'host', group: 'Serving', value: 'ADDR', default: '127.0.0.1', describe: 'Address to listen on' },
  { flag: 'listen-port', group: 'Serving', value: 'PORT', default: '30100', describe: 'Port to listen on' },
  { flag: 'sse-keepalive-secs', group: 'Serving', value: 'SECS', default: '0', describe: 'While a streaming request waits for its model, send an SSE comment every SECS seconds (0: off)' },
  { flag: 'upstream-timeout-secs', group: 'Timeouts and scheduling', value: 'SECS', default: '120', describe: 'Limit for one forwarded request (for streams: before the first byte and between bytes)' },
  { flag: 'model-ready-timeout-secs', group: 'Timeouts and scheduling', value: 'SECS', default: '120', describe: 'Limit for a model server to start and become ready' },
  { flag: 'model-switch-timeout-secs', group: 'Timeouts and scheduling', value: 'SECS', default: '60', describe: 'Limit for a request to wait for its model, and for each sleep/wake call' },
  { flag: 'min-active-secs', group: 'Timeouts and scheduling', value: 'SECS', defaultText: 'automatic', describe: 'After a wake, how long a busy model keeps serving (and taking new requests) before it yields to requests waiting for another model. Automatic: one measured switch cost, and an idle model yields sooner (see docs/scheduling.md). Given: a fixed window; 0 = first come, first served' },
  { flag: 'idle-sleep-secs', group: 'Timeouts and scheduling', value: 'SECS', defaultText: 'never', describe: 'Put an awake model to sleep after it has had no request in flight or waiting this long' },
  { flag: 'lazy', group: 'Timeouts and scheduling', describe: 'Start each model on its first request instead of at start-up' },
  { flag: 'gpu-memory-budget', group: 'Timeouts and scheduling', value: 'FRACTION', default: '0.9', describe: 'Models stay awake together on a GPU while their --mem-fraction-static shares add up to at most this; the rest of the GPU is left for their CUDA contexts and activations (see README: where each model lives)' },
  { flag: 'api-key', group: 'Security', value: 'KEY', env: 'SGLANGMUX_API_KEY', describe: 'Require Authorization: Bearer <key> on inference routes (the variable stays out of `ps`)' },
  { flag: 'admin-api-key', group: 'Security', value: 'KEY', env: 'SGLANGMUX_ADMIN_API_KEY', describe: 'Require Authorization: Bearer <key> on the control API and /metrics; without it the control API answers only on a loopback listener' },
  { flag: 'cors-origin', group: 'Security', value: 'ORIGIN', repeatable: true, describe: 'Answer browser requests from this origin with CORS headers (repeatable; * for any)' },
  { flag: 'log-dir', group: 'Logging', value: 'DIR', default: 'sglangmux-logs', describe: 'Directory for the per-model stdout/stderr logs' },
  { flag: 'help', short: 'h', group: 'Other', describe: 'Print this help' },
  { flag: 'version', short: 'V', group: 'Other', describe: 'Print the version' },
];

export const HELP_PAGE: HelpPage = {
  about: 'One OpenAI-compatible endpoint (http://127.0.0.1:30100/v1 by default) in front of several SGLang servers on one GPU host. Each launch script starts one model; the model named in a request is woken on demand, the others sleep.',
  usage: USAGE,
  arguments: [{
    name: '<launch-script>...',
    describe: 'A bash script that starts one SGLang server, with MODEL_NAME= and PORT= lines; a directory stands for the *.sh files in it, in name order',
  }],
  sections: GROUPS.map((title) => ({ title, options: OPTIONS.filter((o) => o.group === title) })),
  example: 'sglangmux --listen-port 30100 qwen.sh llama.sh',
};

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Prints the one-line error and the usage hint, then exits 2. */
export function exitWithUsageError(message: string): never {
  process.stderr.write(`error: ${message}\nUsage: ${USAGE}\nTry 'sglangmux --help' for more information.\n`);
  process.exit(2);
}

/** Decimal notation only (`2`, `0.5`, `.5`, `1e3`), not the hex, blanks or `Infinity` that
 * Number() would also take. */
function decimal(text: string): number {
  return /^(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(text) ? Number(text) : NaN;
}

function positive(name: string, text: string): number {
  const value = decimal(text);
  if (!(value > 0)) throw new UsageError(`--${name} must be a positive number, got '${text}'`);
  return value;
}

function nonNegative(name: string, text: string): number {
  const value = decimal(text);
  if (!(value >= 0)) throw new UsageError(`--${name} must be a number >= 0, got '${text}'`);
  return value;
}

function fraction(name: string, text: string): number {
  const value = decimal(text);
  if (!(value > 0 && value <= 1)) throw new UsageError(`--${name} must be a fraction above 0 and at most 1, got '${text}'`);
  return value;
}

function port(name: string, text: string): number {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(value >= 1 && value <= 65535)) throw new UsageError(`--${name} must be a port number (1-65535), got '${text}'`);
  return value;
}

/** A key from its flag, else from its environment variable; never empty. Never echoed. */
function key(name: string, flag: string | undefined, fromEnv: string | undefined): string | null {
  if (flag !== undefined) {
    if (flag.trim() === '') throw new UsageError(`--${name} must not be empty`);
    return flag;
  }
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : null;
}

/** The first option on the command line that is not one of OPTIONS, as typed (`--bogus`, `-x`). */
function unknownOption(argv: readonly string[], parsed: Record<string, unknown>): string | null {
  const known = new Set(OPTIONS.flatMap((o) => (o.short === undefined ? [o.flag] : [o.flag, o.short])));
  const unknown = new Set(Object.keys(parsed).filter((k) => k !== '_' && k !== '$0' && !known.has(k)));
  if (unknown.size === 0) return null;
  for (const token of argv) {
    if (token === '--') break;
    const spelled = token.startsWith('--') ? [token.split('=')[0]!] : token.startsWith('-') ? [...token.slice(1)].map((c) => `-${c}`) : [];
    const typed = spelled.find((s) => unknown.has(s.replace(/^--?/, '')));
    if (typed !== undefined) return typed;
  }
  return `--${[...unknown][0]}`; // not found as typed: yargs' name for it
}

/** `--lazy=maybe`: yargs would read any value but `true` as false, silently. */
function switchWithValue(argv: readonly string[]): string | null {
  const switches = new Set(OPTIONS.filter((o) => o.value === undefined).map((o) => `--${o.flag}`));
  const end = argv.indexOf('--');
  for (const token of end < 0 ? argv : argv.slice(0, end)) {
    const [flag = '', value] = token.split(/=(.*)/s);
    if (switches.has(flag) && value !== undefined && value !== 'true' && value !== 'false') {
      return `${flag} takes no value, got '${value}'`;
    }
  }
  return null;
}

/** The option's values, as typed, else its default; checks how often it was given. */
function valuesOf(spec: OptionSpec, parsed: Record<string, unknown>): string[] {
  const typed = ([] as unknown[]).concat(parsed[spec.flag] ?? []).map(String);
  if (typed.length > 1 && spec.repeatable !== true) throw new UsageError(`--${spec.flag} given more than once`);
  if (typed.includes('')) throw new UsageError(`--${spec.flag} needs a value`);
  return typed.length > 0 || spec.default === undefined ? typed : [spec.default];
}

/** Parses argv (without node and script). --help and --version print and exit 0. Keys may come
 * from `env` (SGLANGMUX_API_KEY, SGLANGMUX_ADMIN_API_KEY). Throws UsageError naming what was typed. */
export function parseArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Options {
  const parsed: Record<string, unknown> & { _: (string | number)[] } = yargs([...argv])
    // Every value stays the text typed; a flag has one spelling (no --bogusFlag twin, no --no-X).
    .parserConfiguration({
      'camel-case-expansion': false,
      'boolean-negation': false,
      'dot-notation': false,
      'parse-numbers': false,
      'parse-positional-numbers': false,
    })
    // yargs' own --help and --version off first: turning them off drops those options.
    .help(false)
    .version(false)
    .options(Object.fromEntries(OPTIONS.map((o) => [o.flag, { type: o.value === undefined ? 'boolean' : 'string', alias: o.short }] as const)))
    .exitProcess(false)
    .fail((msg, err) => {
      throw new UsageError(msg ?? err?.message ?? 'invalid arguments');
    })
    .parseSync();

  const unknown = unknownOption(argv, parsed);
  if (unknown !== null) throw new UsageError(`unknown option '${unknown}'`);
  const misused = switchWithValue(argv);
  if (misused !== null) throw new UsageError(misused);
  if (parsed.help === true || parsed.version === true) {
    const width = helpWidth(process.env.COLUMNS, process.stdout.isTTY ? process.stdout.columns : undefined);
    process.stdout.write(parsed.help === true ? renderHelp(HELP_PAGE, width) : `${VERSION}\n`);
    process.exit(0);
  }

  const values = new Map(OPTIONS.map((o) => [o.flag, valuesOf(o, parsed)]));
  const text = (flag: string): string | undefined => values.get(flag)?.[0];
  /** For an option with a default, which valuesOf always supplies. */
  const defaulted = (flag: string): string => {
    const value = text(flag);
    if (value === undefined) throw new Error(`--${flag} has no default`);
    return value;
  };
  const scripts = parsed._.map(String);
  if (scripts.length === 0) throw new UsageError('no launch scripts given');
  const minActive = text('min-active-secs');
  const idleSleep = text('idle-sleep-secs');
  return {
    host: defaulted('host'),
    listenPort: port('listen-port', defaulted('listen-port')),
    upstreamTimeoutSecs: positive('upstream-timeout-secs', defaulted('upstream-timeout-secs')),
    modelReadyTimeoutSecs: positive('model-ready-timeout-secs', defaulted('model-ready-timeout-secs')),
    modelSwitchTimeoutSecs: positive('model-switch-timeout-secs', defaulted('model-switch-timeout-secs')),
    minActiveSecs: minActive === undefined ? null : nonNegative('min-active-secs', minActive),
    idleSleepSecs: idleSleep === undefined ? null : positive('idle-sleep-secs', idleSleep),
    lazy: parsed.lazy === true,
    gpuMemoryBudget: fraction('gpu-memory-budget', defaulted('gpu-memory-budget')),
    logDir: defaulted('log-dir'),
    scripts,
    apiKey: key('api-key', text('api-key'), env.SGLANGMUX_API_KEY),
    adminApiKey: key('admin-api-key', text('admin-api-key'), env.SGLANGMUX_ADMIN_API_KEY),
    corsOrigins: values.get('cors-origin') ?? [],
    sseKeepaliveSecs: nonNegative('sse-keepalive-secs', defaulted('sse-keepalive-secs')),
  };
}
