// Faults survived with nothing lost: a crash mid-stream, a crash loop (backed off, reported),
// a resume that hangs, a release that fails or hangs. Each ends with the other model serving
// and the faulty one recoverable, and no simulator hazard.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Daemon, pidGone, sseData, type ChatBody, type ModelDef } from './support/daemon.js';
import { crashes, expectedReply, type LedgerEvent } from './support/sim.js';

const daemons: Daemon[] = [];
after(async () => {
  for (const d of daemons) {
    await d.stop();
    d.cleanup();
  }
});

async function start(models: ModelDef[], args: string[] = []): Promise<Daemon> {
  const d = await Daemon.start({ models, args });
  daemons.push(d);
  return d;
}

function serverPid(ev: LedgerEvent[], model: string): number {
  const listening = ev.filter((e) => e.event === 'listening' && e.model === model).at(-1);
  assert.ok(listening, `${model} has been listening`);
  return listening.pid;
}

describe('faults', () => {
  test('a model crashing mid-stream: the client sees the stream end in an error, others serve, next request restarts it', async () => {
    const d = await start([{ name: 'a', env: { SGLANG_SIM_CRASH_AFTER_TOKENS: '3' } }, { name: 'b' }]);
    const res = await d.post('/v1/chat/completions', {
      model: 'a', stream: true, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(res.status, 200);
    const events = sseData(await res.text());
    assert.ok(!events.includes('[DONE]'), 'the stream did not pretend to finish');
    assert.ok(events.length >= 4, 'the tokens before the crash came through');
    // It ends with an error event in the OpenAI shape, as SGLang reports errors mid-stream.
    const last = JSON.parse(events.at(-1)!) as { error?: { message: string; type: string } };
    assert.match(last.error?.message ?? '', /^upstream unreachable: /);
    assert.equal(last.error?.type, 'server_error');
    await d.waitHealth((h) => d.state(h, 'a') === 'failed', 'a failed');
    assert.equal((await d.chat('b', 2)).body.choices?.[0]?.message?.content, expectedReply('b', 2));
    // Two tokens stay below the crash point: a restarted a answers.
    assert.equal((await d.chat('a', 2)).body.choices?.[0]?.message?.content, expectedReply('a', 2));
    assert.deepEqual(crashes(d.ledger()), []);
  });

  test('a request waiting for a model whose process dies is served after a restart; only in-flight requests see an error', async () => {
    const d = await start([{ name: 'a', env: { SGLANG_SIM_TOKEN_MS: '20' } }, { name: 'b' }]);
    assert.equal((await d.chat('a', 1)).status, 200); // b, last booted, is put to sleep
    const bPid = serverPid(d.ledger(), 'b');
    // a is busy with a stream, so the request for b waits while b sleeps.
    const busy = await d.post('/v1/chat/completions', {
      model: 'a', stream: true, max_tokens: 30, messages: [{ role: 'user', content: 'long' }],
    });
    assert.equal(busy.status, 200);
    const forB = d.chat('b', 2);
    await d.waitLog(/request for b waits/);
    process.kill(bPid, 'SIGKILL');
    await d.waitLog(/model b: process .*SIGKILL/);
    const answer = await forB;
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body.choices?.[0]?.message?.content, expectedReply('b', 2));
    assert.ok(sseData(await busy.text()).includes('[DONE]'), 'the stream on a was not touched');
    assert.deepEqual(crashes(d.ledger()), []);
  });

  test('a model that fails on every start is backed off and reported, not restarted in a loop', async () => {
    const d = await start([{ name: 'a' }, { name: 'bad', env: { SGLANG_SIM_EXIT_AT_START: '3' } }]);
    const h = await d.health();
    assert.equal(d.state(h, 'bad'), 'failed');
    const entry = h.models.find((m) => m.id === 'bad') as { last_error?: string };
    assert.match(entry.last_error ?? '', /exited with code 3 .*bad_\d+\.stderr\.log/);
    const answers = [];
    for (let i = 0; i < 10; i++) {
      const res = await d.post('/v1/chat/completions', { model: 'bad', max_tokens: 1, messages: [{ role: 'user', content: 'hi' }] });
      answers.push({ status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as ChatBody });
    }
    for (const a of answers) {
      assert.equal(a.status, 503);
      assert.match(a.body.error?.message ?? '', /^model not ready: /);
      // Every one of these 503s may be retried: it says when (a router in front waits that long).
      assert.match(a.retryAfter ?? '', /^[1-9]\d*$/, 'Retry-After in whole seconds');
    }
    const backedOff = answers.filter((a) => /failed \d+ times in a row, next start in \d+ s/.test(a.body.error?.message ?? ''));
    assert.ok(backedOff.length > 0);
    for (const a of backedOff) {
      // The header and the message name the same wait.
      assert.equal(a.body.error?.message.match(/next start in (\d+) s/)?.[1], a.retryAfter);
    }
    const starts = d.ledger().filter((e) => e.event === 'start' && e.model === 'bad').length;
    assert.ok(starts <= 3, `started ${starts} times for 10 requests`);
    assert.equal((await d.chat('a', 2)).status, 200);
  });

  test('a resume that hangs: the wake times out, the process is stopped, waiters get 503, the model comes back', async () => {
    const d = await start(
      [{ name: 'a' }, { name: 'b', env: { SGLANG_SIM_HANG_RESUME: '1' } }],
      ['--model-switch-timeout-secs', '2'],
    );
    const hungPid = serverPid(d.ledger(), 'b');
    assert.equal((await d.chat('a', 1)).status, 200); // b, last booted, is put to sleep
    const r = await d.chat('b', 1);
    assert.equal(r.status, 503);
    assert.match(r.body.error?.message ?? '', /^model not ready: /);
    await d.waitHealth((h) => d.state(h, 'b') === 'failed', 'b failed after its wake timed out');
    assert.ok(pidGone(hungPid), 'the hung server was stopped');
    assert.equal((await d.chat('a', 2)).body.choices?.[0]?.message?.content, expectedReply('a', 2));
    // The next request starts b afresh (a cold start does not resume, so it cannot hang).
    assert.equal((await d.chat('b', 2)).body.choices?.[0]?.message?.content, expectedReply('b', 2));
    assert.deepEqual(crashes(d.ledger()), []);
  });

  for (const fault of ['SGLANG_SIM_FAIL_RELEASE', 'SGLANG_SIM_HANG_RELEASE']) {
    test(`a release that ${fault.endsWith('FAIL_RELEASE') ? 'fails' : 'hangs'}: the process is stopped before anything else wakes`, async () => {
      const d = await start(
        [{ name: 'a' }, { name: 'b', env: { [fault]: '1' } }],
        ['--model-switch-timeout-secs', '2'],
      );
      // Bootstrap already met the fault on b's sleep... b was the last, so it is awake: switch away.
      const bPid = serverPid(d.ledger(), 'b');
      const mark = d.ledger().length;
      const first = await d.chat('a', 2);
      if (fault.endsWith('HANG_RELEASE')) {
        // The hung release used up the switch timeout of the request that caused it.
        assert.equal(first.status, 503);
        assert.match(first.body.error?.message ?? '', /^model not ready: /);
        await d.waitHealth((h) => d.state(h, 'b') === 'stopped', 'b stopped after its release timed out');
      } else {
        assert.equal(first.body.choices?.[0]?.message?.content, expectedReply('a', 2));
      }
      assert.equal((await d.chat('a', 2)).body.choices?.[0]?.message?.content, expectedReply('a', 2));
      const ev = d.ledger().slice(mark);
      const exitB = ev.findIndex((e) => e.event === 'exit' && e.model === 'b');
      const resumeA = ev.findIndex((e) => e.event === 'resume' && e.model === 'a');
      assert.ok(exitB >= 0 && resumeA > exitB, 'b exited before a resumed');
      assert.ok(pidGone(bPid));
      assert.equal((await d.chat('b', 2)).body.choices?.[0]?.message?.content, expectedReply('b', 2));
      const all = d.ledger();
      assert.deepEqual(crashes(all), []);
      assert.deepEqual(all.filter((e) => e.event === 'oom'), []);
    });
  }
});
