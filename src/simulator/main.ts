// Entry point of the SGLang simulator (bundled to dist/sglang-sim.mjs). Same command line as
// `python -m sglang.launch_server`; behaviour tuned by SGLANG_SIM_* variables (see
// docs/simulator.md). Startup order follows SGLang: load the model (taking GPU memory), bind
// HTTP, warm up, print the ready line.
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs, UsageError, type SimArgs } from './args.js';
import type { Sim } from './context.js';
import { DeviceError, devicesOf } from './devices.js';
import { createHttpServer } from './http.js';
import { readKnobs, type Knobs } from './knobs.js';
import { Ledger } from './ledger.js';
import { faultExit, installExitHandlers } from './lifecycle.js';
import * as log from './log.js';
import { MemoryState, sizesAtStart } from './memory.js';
import { routes } from './routes.js';
import { Scheduler } from './scheduler.js';

function configure(): { args: SimArgs; knobs: Knobs } {
  try {
    return { args: parseArgs(process.argv.slice(2)), knobs: readKnobs(process.env) };
  } catch (e) {
    if (e instanceof UsageError) {
      log.stderr(`usage: launch_server.py [-h] --model-path MODEL_PATH [--port PORT] ...\nlaunch_server.py: error: ${e.message}`);
    } else {
      log.stderr(`sglang simulator: ${(e as Error).message}`);
    }
    process.exit(2);
  }
}

function gpusOf(args: SimArgs, knobs: Knobs): number[] {
  try {
    return devicesOf(args, process.env['CUDA_VISIBLE_DEVICES'], knobs.gpus);
  } catch (e) {
    if (!(e instanceof DeviceError)) throw e;
    log.error(`Scheduler hit an exception: ${e.message}`);
    process.exit(1);
  }
}

async function main(): Promise<void> {
  const { args, knobs } = configure();
  const gpus = gpusOf(args, knobs);
  const ledger = new Ledger(knobs.ledger, { pid: process.pid, port: args.port, model: args.servedName }, knobs.gpuMb, gpus);
  installExitHandlers(ledger);

  const ignored = args.ignored.length > 0 ? `, ignored=[${args.ignored.join(' ')}]` : '';
  log.info(
    `server_args=ServerArgs(model_path='${args.modelPath}', served_model_name='${args.servedName}', host='${args.host}', port=${args.port}, ` +
      `enable_memory_saver=${args.memorySaver ? 'True' : 'False'}, enable_weights_cpu_backup=${args.cpuBackup ? 'True' : 'False'}, ` +
      `mem_fraction_static=${args.memFractionStatic ?? 'None'}, tp_size=${args.tpSize}, dp_size=${args.dpSize}, base_gpu_id=${args.baseGpuId}, api_key=${args.apiKey === null ? 'None' : "'***'"}${ignored})`,
  );
  ledger.record('start', { model_path: args.modelPath, gpus });

  if (knobs.exitAtStart !== null) {
    faultExit(ledger, 'exit_at_start', knobs.exitAtStart, `Scheduler hit an exception: RuntimeError: simulated startup failure (SGLANG_SIM_EXIT_AT_START=${knobs.exitAtStart})`);
  }

  // Loading the model takes its whole share at once (plus the residue outside the memory saver:
  // CUDA context and other allocations a release never frees); a GPU already held by others
  // means OOM.
  const sizes = sizesAtStart(knobs.modelMb, args.memFractionStatic, knobs.gpuMb - ledger.usedMb(), knobs.cudaGraphMb);
  const share = sizes === null ? knobs.modelMb : sizes.weights + sizes.kv_cache + sizes.cuda_graph;
  const got = sizes === null ? { ok: false, used: ledger.usedMb() } : ledger.allocate(share + knobs.residueMb, { reason: 'load' });
  if (!got.ok || sizes === null) {
    ledger.record('oom', { mb: share + knobs.residueMb, used: got.used });
    log.error(
      `Scheduler hit an exception: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate ${share + knobs.residueMb} MiB. ` +
        `GPU has a total capacity of ${knobs.gpuMb} MiB of which ${Math.max(0, knobs.gpuMb - got.used)} MiB is free.`,
    );
    process.exit(1);
  }
  log.info(`Load weight begin. avail mem=${knobs.gpuMb - got.used + share + knobs.residueMb} MB`);
  await sleep(knobs.startupMs);
  log.info(`Load weight end. mem usage=${share} MB, KV cache ${sizes.kv_cache} MB, residue ${knobs.residueMb} MB`);

  const sim: Sim = {
    args,
    knobs,
    ledger,
    memory: new MemoryState(sizes, args.memorySaver),
    scheduler: new Scheduler(args.dpSize, knobs.tokenMs, knobs.abortNoticeMs, (job) => {
      ledger.record('abort', { rid: job.rid });
      log.info(`Abort request ${job.rid}`);
    }),
    phase: 'starting',
    wedged: false,
    created: Math.floor(Date.now() / 1000),
  };

  const server = createHttpServer(sim, routes(sim));
  await new Promise<void>((resolve) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      log.error(`[Errno ${e.code === 'EADDRINUSE' ? 98 : e.errno ?? 1}] error while attempting to bind on address ('${args.host}', ${args.port}): ${e.message}`);
      process.exit(1);
    });
    server.listen(args.port, args.host, () => resolve());
  });
  sim.phase = 'warming';
  ledger.record('listening');
  log.uvicorn(`Started server process [${process.pid}]`);
  log.uvicorn(`Uvicorn running on http://${args.host}:${args.port} (Press CTRL+C to quit)`);

  await sleep(knobs.warmupMs);
  sim.phase = 'ready';
  ledger.record('ready');
  log.info('The server is fired up and ready to roll!');
}

main().catch((e: unknown) => {
  log.error(`sglang simulator failed: ${(e as Error).stack ?? String(e)}`);
  process.exit(1);
});
