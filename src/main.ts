// Entry point: parse the command line and the launch scripts, listen at once (so /health
// answers during bootstrap), start the models one at a time, and stop everything on a signal.
import { resolve } from 'node:path';
import { exitWithUsageError, parseArgs, UsageError, type Options } from './cli.js';
import { EventFeed, schedulerReports } from './event-feed.js';
import { createApp } from './frontend.js';
import { loadLaunchScripts, reloadRisk, ScriptError, type ModelSpec } from './launch-script.js';
import { log } from './log.js';
import { Metrics } from './metrics.js';
import { Scheduler } from './scheduler.js';
import { VERSION } from './version.js';

const CLIENT_KEEPALIVE_MS = 65_000;

const STOP_GRACE_MS = 10_000;

function configure(argv: readonly string[]): { opts: Options; specs: ModelSpec[] } {
  try {
    const opts = parseArgs(argv);
    return { opts, specs: loadLaunchScripts(opts.scripts, opts.listenPort, scriptEnv()) };
  } catch (err) {
    if (err instanceof UsageError || err instanceof ScriptError) exitWithUsageError(err.message);
    throw err;
  }
}

function warnAboutScript(spec: ModelSpec): void {
  if (spec.placement.gpus === null) {
    log.warn(`model ${spec.name} (${spec.script}): which GPUs it uses is unknown: ${spec.placement.unknown}`);
  }
  if (!spec.memorySaver) {
    log.warn(`model ${spec.name} (${spec.script}): no --enable-memory-saver, so it is stopped and restarted on every switch; add --enable-memory-saver to its sglang command to sleep and wake it in seconds`);
  } else if (!spec.cpuBackup) {
    const risky = reloadRisk(spec);
    if (risky) {
      log.warn(`model ${spec.name} (${spec.script}): sleeps without --enable-weights-cpu-backup and uses ${risky}, which SGLang's reload from disk is known to refuse or silently corrupt; add --enable-weights-cpu-backup (costs host RAM equal to the weights, pinned, from the first sleep on)`);
    } else {
      log.info(`model ${spec.name}: weights are reloaded from disk on every wake; --enable-weights-cpu-backup keeps them in CPU memory instead (host RAM equal to the weights)`);
    }
  }
}

/** The environment for launch scripts, without the daemon's own keys (the model servers have
 * theirs, in their scripts, often as `$VAR` from this environment). */
function scriptEnv(): NodeJS.ProcessEnv {
  const { SGLANGMUX_API_KEY: _api, SGLANGMUX_ADMIN_API_KEY: _admin, ...rest } = process.env;
  return rest;
}

/** The active window must leave a waiter time to be served before its switch timeout (the
 * automatic window is capped the same way by the scheduler). */
function minActiveMs(opts: Options): number | null {
  const limit = opts.modelSwitchTimeoutSecs / 2;
  if (opts.minActiveSecs === null) return null;
  if (opts.minActiveSecs <= limit) return opts.minActiveSecs * 1000;
  log.warn(`--min-active-secs ${opts.minActiveSecs} is not below half of --model-switch-timeout-secs; using ${limit}`);
  return limit * 1000;
}

/** SIGHUP: re-reads the launch scripts; a configuration that no longer loads is rejected whole. */
function reload(scheduler: Scheduler, opts: Options): void {
  let specs: ModelSpec[];
  try {
    specs = loadLaunchScripts(opts.scripts, opts.listenPort, scriptEnv());
  } catch (err) {
    log.error(`SIGHUP: configuration rejected, keeping the running one: ${err instanceof Error ? err.message : String(err)}`);
    return;
  }
  const { added, removed, changed } = scheduler.reload(specs);
  specs.filter((s) => added.includes(s.name) || changed.includes(s.name)).forEach(warnAboutScript);
  const list = (names: string[]): string => (names.length ? names.join(', ') : 'none');
  log.info(`SIGHUP: configuration reloaded: added ${list(added)}; removed ${list(removed)}; changed ${list(changed)}`);
}

async function main(): Promise<void> {
  const { opts, specs } = configure(process.argv.slice(2));
  specs.forEach(warnAboutScript);

  // Metrics read the scheduler's details at scrape time and observe its switches; so does the
  // dashboard's event feed.
  const metrics: Metrics = new Metrics(() => scheduler.details(), () => scheduler.gpuStatus());
  const events = new EventFeed();
  const scheduler: Scheduler = new Scheduler(specs, {
    readyTimeoutMs: opts.modelReadyTimeoutSecs * 1000,
    switchTimeoutMs: opts.modelSwitchTimeoutSecs * 1000,
    minActiveMs: minActiveMs(opts),
    logDir: resolve(opts.logDir),
    env: scriptEnv(),
    stopGraceMs: STOP_GRACE_MS,
    idleSleepMs: opts.idleSleepSecs === null ? null : opts.idleSleepSecs * 1000,
    lazy: opts.lazy,
    gpuBudget: opts.gpuMemoryBudget,
    observer: schedulerReports(metrics, events),
  });
  const app = createApp(scheduler, {
    upstreamTimeoutMs: opts.upstreamTimeoutSecs * 1000,
    // Auth, metrics, control and keepalive (README: "Auth, metrics and control").
    sseKeepaliveMs: opts.sseKeepaliveSecs * 1000,
    apiKey: opts.apiKey,
    adminApiKey: opts.adminApiKey,
    host: opts.host,
    corsOrigins: opts.corsOrigins,
    metrics,
    events,
  });

  const server = app.listen(opts.listenPort, opts.host);
  // Idle client connections live longer than clients keep them (httpx, under the Python openai
  // SDK, drops its own at 5 s, Node's default here), so a client never sends a request on a
  // connection the daemon is just closing; nginx keeps them 75 s.
  server.keepAliveTimeout = CLIENT_KEEPALIVE_MS;
  server.once('error', (err) => {
    log.error(`cannot listen on ${opts.host}:${opts.listenPort}: ${err.message}`);
    void scheduler.shutdown().finally(() => process.exit(1));
  });
  await new Promise<void>((r) => server.once('listening', r));
  log.info(`sglangmux ${VERSION} listening on http://${opts.host}:${opts.listenPort} for ${specs.map((s) => s.name).join(', ')}`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn(`${signal} again: exiting now`);
      process.exit(1); // the exit hook still kills every model's process group
    }
    stopping = true;
    log.info(`${signal}: stopping`);
    server.close();
    server.closeAllConnections();
    void scheduler.shutdown().then(() => {
      log.info('all models stopped; bye');
      process.exit(0);
    });
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('SIGHUP', () => reload(scheduler, opts));

  if (!(await scheduler.bootstrap()) && !stopping) {
    log.error('no model could be started; see the logs in ' + resolve(opts.logDir));
    await scheduler.shutdown();
    process.exit(1);
  }
}

main().catch((err: unknown) => {
  log.error(`fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
