// Several models awake at once where their GPU shares fit (issue 12; README "Where each model
// lives", docs/scheduling.md "Several models awake"), against the simulator's per-GPU ledger:
// models that fit are never switched, a switch puts to sleep only what must make room, and
// models on other GPUs are never drained, slept or waited for.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Daemon, useDaemon, type ModelDef } from './support/daemon.js';
import { crashes, expectedReply, type LedgerEvent } from './support/sim.js';

const SHARED: Record<string, string> = { SGLANG_SIM_MODEL_MB: '200' };
const moves = (ev: readonly LedgerEvent[]): LedgerEvent[] => ev.filter((e) => e.event === 'release' || e.event === 'resume');
const count = (ev: readonly LedgerEvent[], kind: string, model?: string): number =>
  ev.filter((e) => e.event === kind && (model === undefined || e.model === model)).length;

function assertNoHazard(d: Daemon): void {
  const ev = d.ledger();
  assert.deepEqual(crashes(ev), []);
  assert.deepEqual(ev.filter((e) => e.event === 'oom' || e.event === 'hang'), [], 'no GPU oversubscribed, no resume hung');
}

const atShare = (name: string, share: number): ModelDef => ({ name, flags: `--mem-fraction-static ${share}` });
const reply = async (d: Daemon, model: string): Promise<void> => {
  const r = await d.chat(model, 2);
  assert.equal(r.body.choices?.[0]?.message?.content, expectedReply(model, 2), `${model} answered`);
};
const awake = async (d: Daemon): Promise<string[]> => [...(await d.health()).awake_models].sort();

describe('two models at 0.4 on one GPU', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), { models: [atShare('a', 0.4), atShare('b', 0.4)], env: SHARED });

  test('alternate with no release or resume once both woke', async () => {
    await reply(d, 'a');
    await reply(d, 'b');
    assert.deepEqual(await awake(d), ['a', 'b']);
    const mark = d.ledger().length;
    for (let i = 0; i < 8; i++) await reply(d, i % 2 ? 'a' : 'b');
    assert.deepEqual(moves(d.ledger().slice(mark)), []);
    assert.deepEqual(await awake(d), ['a', 'b']);
    assertNoHazard(d);
  });

  test('metrics show the shares planned on the GPU and the memory nvidia-smi shows in use', async () => {
    await reply(d, 'a');
    await reply(d, 'b');
    const text = await (await fetch(`${d.url}/metrics`)).text();
    const sample = (name: string): number => Number(new RegExp(`^sglangmux_${name}\\{gpu="0"\\} (\\S+)$`, 'm').exec(text)?.[1]);
    assert.equal(sample('gpu_planned_share'), 0.8);
    assert.equal(sample('gpu_memory_total_bytes'), 1000 * 1024 * 1024);
    assert.ok(sample('gpu_memory_used_bytes') >= 700 * 1024 * 1024, 'both models\' memory in use');
  });
});

describe('two models at 0.4 that each take more than their share', () => {
  // Their CUDA graphs (150 MB) come outside the fraction, as on a real server: 0.55 each.
  let d: Daemon;
  useDaemon((started) => (d = started), { models: [atShare('a', 0.4), atShare('b', 0.4)], env: { ...SHARED, SGLANG_SIM_CUDA_GRAPH_MB: '150' } });

  test('are measured at their wake, warned about once, and planned with what they took', async () => {
    const warning = (m: string): RegExp => new RegExp(`model ${m}: took \\d+ MiB on GPU 0 at its wake, a share of 0\\.550 against --mem-fraction-static 0\\.4; planning with 0\\.550`, 'g');
    // The measurement follows the wake (the answer does not wait for it).
    await reply(d, 'a');
    await d.waitLog(warning('a'), 30_000, true);
    await reply(d, 'b');
    await d.waitLog(warning('b'), 30_000, true);
    const text = await (await fetch(`${d.url}/metrics`)).text();
    assert.match(text, /^sglangmux_gpu_planned_share\{gpu="0"\} 0\.55$/m, 'one of them awake, planned at 0.55');
    // From now on each request for the other model is a planned switch, not a wake beside it
    // that finds no room.
    const mark = d.output.length;
    for (const m of ['a', 'b', 'a', 'b']) await reply(d, m);
    const log = d.output.slice(mark);
    assert.equal(log.match(/switch \w+ -> \w+ \(/g)?.length, 4, log);
    assert.doesNotMatch(log, /it fits beside/);
    for (const m of ['a', 'b']) assert.equal(d.output.match(warning(m))?.length, 1, `one warning for ${m}`);
    assertNoHazard(d);
  });
});

describe('three models at 0.45 on one GPU', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), { models: [atShare('a', 0.45), atShare('b', 0.45), atShare('c', 0.45)], env: SHARED });

  test('two stay awake; alternating between them moves nothing; the third costs one sleep and one wake', async () => {
    // The bootstrap leaves c awake; a fits beside it.
    let mark = d.ledger().length;
    await reply(d, 'a');
    assert.deepEqual(moves(d.ledger().slice(mark)).map((e) => `${e.event} ${e.model}`), ['resume a']);
    for (let i = 0; i < 6; i++) await reply(d, i % 2 ? 'a' : 'c');
    // b: the least recently used of the two makes room (a served last).
    mark = d.ledger().length;
    await reply(d, 'b');
    let ev = d.ledger().slice(mark);
    assert.equal(count(ev, 'release'), 1, 'one sleep');
    assert.equal(count(ev, 'release', 'c'), 1, 'of the least recently used');
    assert.equal(count(ev, 'resume'), 1, 'one wake');
    assert.deepEqual(await awake(d), ['a', 'b']);
    mark = d.ledger().length;
    for (let i = 0; i < 6; i++) await reply(d, i % 2 ? 'a' : 'b');
    ev = d.ledger().slice(mark);
    assert.deepEqual(moves(ev), []);
    assertNoHazard(d);
  });
});

const onGpu = (name: string, visible: string, flags = ''): ModelDef => ({ name, env: { CUDA_VISIBLE_DEVICES: visible }, flags });

describe('two GPUs', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), {
    models: [onGpu('a', '0'), onGpu('b', '0'), { ...onGpu('x', '1'), env: { CUDA_VISIBLE_DEVICES: '1', SGLANG_SIM_TOKEN_MS: '20' } }],
    env: { SGLANG_SIM_GPUS: '2' },
  });

  test('a long stream on GPU 1 continues untouched while the models of GPU 0 switch, without waiting for it', async () => {
    // The bootstrap leaves b (GPU 0) and x (GPU 1) awake.
    assert.deepEqual(await awake(d), ['b', 'x']);
    const mark = d.ledger().length;
    const res = await d.post('/v1/chat/completions', { model: 'x', stream: true, max_tokens: 300, messages: [{ role: 'user', content: 'long' }] });
    assert.equal(res.status, 200);
    let ended = false;
    const text = (async () => {
      let all = '';
      const reader = res.body!.getReader();
      for (let r = await reader.read(); !r.done; r = await reader.read()) all += new TextDecoder().decode(r.value);
      ended = true;
      return all;
    })();
    for (const m of ['a', 'b', 'a', 'b']) await reply(d, m);
    assert.equal(ended, false, 'four switches on GPU 0 done while x still streams');
    const ev = d.ledger().slice(mark);
    assert.equal(count(ev, 'release', 'x') + count(ev, 'pause', 'x'), 0, 'x never paused nor released');
    assert.ok(count(ev, 'release', 'a') + count(ev, 'release', 'b') >= 3, 'GPU 0 switched');
    const all = await text;
    assert.match(all, /data: \[DONE\]/);
    assert.doesNotMatch(all, /"error"/);
    assertNoHazard(d);
  });
});

describe('a TP=2 model and a model on one of its GPUs', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), {
    models: [{ name: 't', flags: '--tp 2' }, onGpu('m', '1')],
    env: { SGLANG_SIM_GPUS: '2' },
  });

  test('are never awake together', async () => {
    for (const m of ['t', 'm', 't', 'm', 't']) await reply(d, m);
    // Replay the ledger: the two never hold memory at the same time.
    const held = new Map<string, number>();
    for (const e of d.ledger()) {
      if (e.event !== 'alloc' && e.event !== 'free') continue;
      held.set(e.model, (held.get(e.model) ?? 0) + (e.event === 'alloc' ? 1 : -1) * (e.mb ?? 0));
      assert.ok(!((held.get('t') ?? 0) > 0 && (held.get('m') ?? 0) > 0), `both hold memory at ${JSON.stringify(e)}`);
    }
    assertNoHazard(d);
  });
});
