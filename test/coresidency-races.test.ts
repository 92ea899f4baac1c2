// Races between switches of models that share one GPU (issue 12), each found by review and
// shown here before its fix: on a GPU one model changes at a time, a wake keeps its GPU until
// its memory is measured, a driver kick is never lost, and victims are released one by one
// so that one's drop of memory is never taken for another's (hazard 4).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Daemon, type ModelDef } from './support/daemon.js';
import { crashes, expectedReply, type LedgerEvent } from './support/sim.js';

const SHARED = { SGLANG_SIM_MODEL_MB: '200' };
const atShare = (name: string, share: number, env: Record<string, string> = {}): ModelDef => ({ name, flags: `--mem-fraction-static ${share}`, env });
const moves = (ev: readonly LedgerEvent[]): string[] => ev.filter((e) => e.event === 'release' || e.event === 'resume').map((e) => `${e.event} ${e.model}`);

async function withDaemon(opts: Parameters<typeof Daemon.start>[0], body: (d: Daemon) => Promise<void>): Promise<void> {
  const d = await Daemon.start(opts);
  try {
    await body(d);
    assert.deepEqual(crashes(d.ledger()), []);
  } finally {
    await d.stop();
    d.cleanup();
  }
}

describe('switches of models sharing a GPU', () => {
  test('an idle sleep waits while another model of its GPU is switching', async () => {
    await withDaemon({ models: [atShare('a', 0.4), atShare('b', 0.4)], env: SHARED, args: ['--idle-sleep-secs', '0.3'] }, async (d) => {
      const changing = new Set(['draining', 'sleeping', 'waking', 'starting']);
      for (let round = 0; round < 3; round++) {
        await Promise.all([d.chat('a', 2), d.chat('b', 2)]);
        await d.waitHealth((h) => h.awake_models.length === 0, 'both asleep');
      }
      // Replay the state changes of the debug log: never two models of GPU 0 changing at once.
      const state = new Map<string, string>();
      for (const m of d.output.matchAll(/model (\w+): (\w+) -> (\w+)/g)) {
        state.set(m[1]!, m[3]!);
        const now = [...state].filter(([, s]) => changing.has(s)).map(([n, s]) => `${n} ${s}`);
        assert.ok(now.length <= 1, `two switches at once on GPU 0: ${now.join(', ')}`);
      }
    });
  });

  test('two wakes back to back on one GPU: the first one\'s measurement does not count the second', async () => {
    await withDaemon({ models: [atShare('a', 0.4), atShare('b', 0.4)], env: SHARED }, async (d) => {
      // Bootstrap leaves b awake; put it to sleep so that both wake on the next requests.
      assert.equal((await fetch(`${d.url}/admin/models/b/sleep`, { method: 'POST' })).status, 200);
      const [ra, rb] = await Promise.all([d.chat('a', 2), d.chat('b', 2)]);
      assert.equal(ra.status, 200);
      assert.equal(rb.status, 200);
      assert.deepEqual((await d.health()).awake_models.sort(), ['a', 'b']);
      const mark = d.ledger().length;
      for (let i = 0; i < 6; i++) assert.equal((await d.chat(i % 2 ? 'a' : 'b', 2)).status, 200);
      assert.doesNotMatch(d.output, /planning with/, 'a measured share above the declared 0.4');
      assert.deepEqual(moves(d.ledger().slice(mark)), [], 'two models at 0.4 stay awake together');
    });
  });

  test('two jobs ending in the same tick: no driver kick is lost, no waiter left hanging', async () => {
    // Shares small enough that mis-measured shares (bug 2) still fit together. Memory shows free
    // 100 ms after a release (hazard 4), so both sleeps end on the same nvidia-smi line.
    const lag = { SGLANG_SIM_FREE_LAG_MS: '100' };
    await withDaemon({ models: [atShare('a', 0.2, lag), atShare('b', 0.2, lag)], env: SHARED, args: ['--idle-sleep-secs', '0.3', '--model-switch-timeout-secs', '8'] }, async (d) => {
      for (let round = 0; round < 10; round++) {
        const aSleeps = d.waitLog(/model a: idle for .*putting it to sleep/);
        const bSleeps = d.waitLog(/model b: idle for .*putting it to sleep/);
        const [ra, rb] = await Promise.all([d.chat('a', 2), d.chat('b', 2)]);
        assert.equal(ra.status, 200);
        assert.equal(rb.status, 200);
        await Promise.all([aSleeps, bSleeps]);
        // a is draining or being released: this request waits for its sleep, then for its wake.
        const started = Date.now();
        const r = await d.chat('a', 2);
        assert.equal(r.status, 200, `round ${round}: ${JSON.stringify(r.body)} after ${Date.now() - started} ms`);
        assert.equal(r.body.choices?.[0]?.message?.content, expectedReply('a', 2));
        await d.waitHealth((h) => h.awake_models.length === 0, 'both asleep again');
      }
    });
  });

  test('two victims: one\'s drop of memory is not taken for the other\'s (hazard 4)', async () => {
    // c needs both a and b out (0.45 + 0.85 > 0.9). a's memory shows free 1.5 s after its release.
    await withDaemon({
      models: [atShare('a', 0.45, { SGLANG_SIM_FREE_LAG_MS: '1500' }), atShare('b', 0.45), atShare('c', 0.85)],
      env: SHARED,
    }, async (d) => {
      // Bootstrap leaves c awake; a wakes in c's place, b beside a.
      assert.equal((await d.chat('a', 2)).status, 200);
      assert.equal((await d.chat('b', 2)).status, 200);
      assert.deepEqual((await d.health()).awake_models.sort(), ['a', 'b']);
      const mark = d.output.length;
      const markLedger = d.ledger().length;
      assert.equal((await d.chat('c', 2)).status, 200);
      const log = d.output.slice(mark);
      assert.doesNotMatch(log, /stopping sleeping|starting it cold instead/, 'c resumed once a\'s memory showed free');
      assert.deepEqual(moves(d.ledger().slice(markLedger)).filter((m) => m.endsWith(' c')), ['resume c']);
    });
  });
});
