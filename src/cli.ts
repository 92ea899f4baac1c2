// The command line, compatible with the Rust sglangmuxd: same flags, defaults and exit codes
// (2 for a usage or configuration error, with a one-line message and a usage hint).
import yargs from 'yargs';
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

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new UsageError(`--${name} must be a positive number, got ${value}`);
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new UsageError(`--${name} must be a number >= 0, got ${value}`);
  return value;
}

function port(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new UsageError(`--${name} must be a port number (1-65535), got ${value}`);
  }
  return value;
}

/** A key from its flag, else from its environment variable; never empty. */
function key(name: string, flag: unknown, fromEnv: string | undefined): string | null {
  if (Array.isArray(flag)) throw new UsageError(`--${name} given more than once`);
  if (typeof flag === 'string') {
    if (flag.trim() === '') throw new UsageError(`--${name} must not be empty`);
    return flag;
  }
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : null;
}

/** Parses argv (without node and script). --help and --version print and exit 0. Keys may come
 * from `env` (SGLANGMUX_API_KEY, SGLANGMUX_ADMIN_API_KEY). */
export function parseArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Options {
  const args = yargs([...argv])
    .scriptName('sglangmux')
    .usage(`Usage: ${USAGE}\n\nOne OpenAI-compatible endpoint in front of several SGLang servers on one GPU host.\nEach launch script starts one model; the model named in a request is woken on demand, the others sleep.`)
    .option('host', { type: 'string', default: '127.0.0.1', describe: 'Address to listen on' })
    .option('listen-port', { type: 'number', default: 30100, describe: 'Port to listen on' })
    .option('upstream-timeout-secs', { type: 'number', default: 120, describe: 'Limit for one forwarded request (for streams: before the first byte and between bytes)' })
    .option('model-ready-timeout-secs', { type: 'number', default: 120, describe: 'Limit for a model server to start and become ready' })
    .option('model-switch-timeout-secs', { type: 'number', default: 60, describe: 'Limit for a request to wait for its model, and for each sleep/wake call' })
    .option('min-active-secs', { type: 'number', describe: 'After a wake, how long a busy model keeps serving (and taking new requests) before it yields to requests waiting for another model (default: automatic, one measured switch cost; an idle model yields sooner; see docs/scheduling.md). Given explicitly: a fixed window, 0 = first come, first served' })
    .option('idle-sleep-secs', { type: 'number', describe: 'Put the awake model to sleep after this long with no request in flight or waiting (default: never)' })
    .option('lazy', { type: 'boolean', default: false, describe: 'Start each model on its first request instead of at start-up' })
    .option('log-dir', { type: 'string', default: 'sglangmux-logs', describe: 'Directory for the per-model stdout/stderr logs' })
    .option('api-key', { type: 'string', describe: 'Require Authorization: Bearer <key> on inference routes (or set SGLANGMUX_API_KEY, which stays out of `ps`)' })
    .option('admin-api-key', { type: 'string', describe: 'Require Authorization: Bearer <key> on the control API and /metrics (or set SGLANGMUX_ADMIN_API_KEY); without it the control API answers only on a loopback listener' })
    .option('cors-origin', { type: 'string', describe: 'Answer browser requests from this origin with CORS headers (repeatable; * for any)' })
    .option('sse-keepalive-secs', { type: 'number', default: 0, describe: 'While a streaming request waits for its model, send an SSE comment every N s (0: off)' })
    .version(VERSION)
    .alias('help', 'h')
    .alias('version', 'V')
    .strictOptions()
    .wrap(100)
    .exitProcess(true)
    .fail((msg, err) => {
      throw new UsageError(msg ?? err?.message ?? 'invalid arguments');
    })
    .parseSync();

  const scripts = args._.map(String);
  if (scripts.length === 0) throw new UsageError('no launch scripts given');
  return {
    host: args.host,
    listenPort: port('listen-port', args['listen-port']),
    upstreamTimeoutSecs: positive('upstream-timeout-secs', args['upstream-timeout-secs']),
    modelReadyTimeoutSecs: positive('model-ready-timeout-secs', args['model-ready-timeout-secs']),
    modelSwitchTimeoutSecs: positive('model-switch-timeout-secs', args['model-switch-timeout-secs']),
    minActiveSecs: args['min-active-secs'] === undefined ? null : nonNegative('min-active-secs', args['min-active-secs']),
    idleSleepSecs: args['idle-sleep-secs'] === undefined ? null : positive('idle-sleep-secs', args['idle-sleep-secs']),
    lazy: args.lazy,
    logDir: args['log-dir'],
    scripts,
    apiKey: key('api-key', args['api-key'], env.SGLANGMUX_API_KEY),
    adminApiKey: key('admin-api-key', args['admin-api-key'], env.SGLANGMUX_ADMIN_API_KEY),
    corsOrigins: ([] as unknown[]).concat(args['cors-origin'] ?? []).map(String).filter((o) => o !== ''),
    sseKeepaliveSecs: nonNegative('sse-keepalive-secs', args['sse-keepalive-secs']),
  };
}
