// The dashboard over plain HTTP: the page and its files at /ui (embedded, nothing from elsewhere),
// the event feed /admin/events (a switch's state changes, phases and requests as they happen,
// and the same again as history for a page opened later), the feed's bounds, and who may load
// what: the page is open with an admin key (it asks for it), the feed needs the key, and
// without a key both follow the control API's loopback rule. The browser tests are in
// dashboard-browser.test.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EventFeed, type FeedEvent } from '../src/event-feed.js';
import { Daemon, useDaemon } from './support/daemon.js';
import { SseStream } from './support/sse.js';

const openFeed = (d: Daemon, headers: Record<string, string> = {}): Promise<SseStream> =>
  SseStream.open(`${d.url}/admin/events`, headers);

const parse = (events: readonly string[]): FeedEvent[] => events.map((e) => JSON.parse(e) as FeedEvent);

/** The lifecycle events of one switch, as `kind model detail` strings in feed order. */
function lifecycle(events: readonly FeedEvent[]): string[] {
  return events.flatMap((e) => {
    switch (e.kind) {
      case 'state': return [`state ${e.model} ${e.from}->${e.to}`];
      case 'phase': return [`phase ${e.model} ${e.phase} ${e.ok ? 'ok' : 'failed'}`];
      case 'switch': return [`switch ${e.from ?? ''}->${e.to} ${e.result}`];
      case 'request': return [];
    }
  });
}

async function assertError(res: Response, status: number, code: string): Promise<void> {
  const text = await res.text();
  assert.equal(res.status, status, text);
  assert.equal((JSON.parse(text) as { error: { code: string } }).error.code, code);
}

describe('dashboard on a loopback listener without an admin key', () => {
  let d: Daemon;
  useDaemon((started) => (d = started), { models: [{ name: 'a' }, { name: 'org/b' }], args: ['--min-active-secs', '0'] });

  test('GET /ui: the page, its script and style sheet, all from the daemon, nothing from elsewhere', async () => {
    for (const path of ['/ui', '/ui/']) {
      const res = await fetch(`${d.url}${path}`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
      const csp = res.headers.get('content-security-policy') ?? '';
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /script-src 'self'/);
      assert.match(csp, /frame-ancestors 'none'/);
      const html = await res.text();
      assert.match(html, /<script src="\/ui\/app\.js" defer><\/script>/);
      assert.match(html, /<link rel="stylesheet" href="\/ui\/app\.css">/);
    }
    const js = await fetch(`${d.url}/ui/app.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/);
    const script = await js.text();
    assert.match(script, /\/admin\/events/);
    const css = await fetch(`${d.url}/ui/app.css`);
    assert.match(css.headers.get('content-type') ?? '', /^text\/css/);
    const style = await css.text();
    // Works offline: no address of another host anywhere (the SVG namespace is a name, not a fetch).
    for (const text of [script, style]) {
      assert.deepEqual(text.match(/https?:\/\/[^\s'"`)]+/g)?.filter((u) => u !== 'http://www.w3.org/2000/svg') ?? [], []);
    }
    assert.equal((await fetch(`${d.url}/ui/nope.js`)).status, 404);
  });

  test('/admin/events: a switch as it happens (states, phases, the switch, the request), then as history', async () => {
    const live = await openFeed(d);
    // The history from bootstrap on comes first: a starts, sleeps; org/b starts and stays awake.
    await live.waitFor(/"kind":"phase","model":"org\/b","phase":"start"/);
    const booted = parse(live.events);
    assert.equal(booted[0]?.seq, 1);
    assert.deepEqual(lifecycle(booted).filter((l) => l.startsWith('phase')), [
      'phase a start ok', 'phase a drain ok', 'phase a sleep ok', 'phase org/b start ok',
    ]);

    const mark = live.events.length;
    assert.equal((await d.chat('a', 2)).status, 200);
    await live.waitFor(/"kind":"request","model":"a"/, mark);
    const now = parse(live.events.slice(mark));
    assert.deepEqual(lifecycle(now), [
      'state org/b awake->draining', 'phase org/b drain ok',
      'state org/b draining->sleeping', 'state org/b sleeping->asleep', 'phase org/b sleep ok',
      'state a asleep->waking', 'state a waking->awake', 'phase a wake ok',
      'switch org/b->a ok',
    ]);
    const request = now.find((e) => e.kind === 'request');
    assert.ok(request?.kind === 'request');
    assert.equal(request.model, 'a');
    assert.equal(request.route, '/v1/chat/completions');
    assert.equal(request.status, 200);
    assert.ok(request.ms >= 0);
    // Numbered in order, stamped with the time each was reported.
    const all = parse(live.events);
    for (let i = 1; i < all.length; i++) {
      assert.equal(all[i]!.seq, all[i - 1]!.seq + 1);
      assert.ok(all[i]!.t >= all[i - 1]!.t);
    }

    // A page opened now gets the same events from the history, then the new ones.
    const later = await openFeed(d);
    await later.waitFor(/"kind":"request","model":"a"/);
    assert.deepEqual(later.events, live.events);
    const mark2 = later.events.length;
    assert.equal((await d.chat('a', 1)).status, 200);
    await later.waitFor(/"kind":"request","model":"a"/, mark2);
    live.close();
    later.close();
  });

  test('EventFeed: a bounded history in which requests do not push the switches out', () => {
    const feed = new EventFeed();
    const seen: FeedEvent[] = [];
    const stop = feed.subscribe((e) => seen.push(e));
    feed.switched({ from: null, to: 'a', result: 'ok', ms: 5 });
    for (let i = 0; i < 2500; i++) feed.request({ model: 'a', route: '/v1/completions', status: 200, ms: 1 });
    stop();
    feed.phase({ model: 'a', phase: 'drain', ok: true, ms: 0 });
    assert.equal(seen.length, 2501);
    const kept = feed.history();
    assert.equal(kept.length, 1 + 2000 + 1);
    assert.equal(kept[0]?.kind, 'switch');
    assert.equal(kept[0]?.seq, 1);
    assert.equal(kept[1]?.seq, 502); // the oldest 500 requests went
    assert.equal(kept.at(-1)?.kind, 'phase');
    for (let i = 0; i < 1200; i++) feed.stateChanged({ model: 'a', from: 'awake', to: 'draining' });
    assert.equal(feed.history().filter((e) => e.kind !== 'request').length, 1000);
    // Past the point where the kept list is trimmed: still the newest 2000, in order.
    for (let i = 0; i < 5000; i++) feed.request({ model: 'a', route: '/v1/completions', status: 200, ms: 1 });
    const requests = feed.history().filter((e) => e.kind === 'request');
    assert.equal(requests.length, 2000);
    assert.equal(requests.at(-1)?.seq, 1 + 2500 + 1 + 1200 + 5000);
    assert.ok(requests.every((e, i) => i === 0 || e.seq === requests[i - 1]!.seq + 1));
  });
});

describe('dashboard with an admin key', () => {
  const key = 'sk-ui-3f81b2c7e9';
  let d: Daemon;
  useDaemon((started) => (d = started), { models: [{ name: 'm' }], env: { SGLANGMUX_ADMIN_API_KEY: key } });

  test('the page loads without the key (it holds no data and asks for it); the feed needs it', async () => {
    for (const path of ['/ui', '/ui/app.js', '/ui/app.css']) assert.equal((await fetch(`${d.url}${path}`)).status, 200, path);
    await assertError(await fetch(`${d.url}/admin/events`), 401, 'invalid_api_key');
    await assertError(await fetch(`${d.url}/admin/events`, { headers: { authorization: 'Bearer sk-wrong' } }), 401, 'invalid_api_key');
    const feed = await openFeed(d, { authorization: `Bearer ${key}` });
    await feed.waitFor(/"kind":"phase","model":"m","phase":"start","ok":true/);
    feed.close();
    assert.ok(!d.output.includes(key));
  });
});

test('dashboard on --host 0.0.0.0 without an admin key: neither the page nor the feed', async () => {
  const d = await Daemon.start({ models: [{ name: 'm' }], args: ['--host', '0.0.0.0'] });
  try {
    for (const path of ['/ui', '/ui/app.js', '/admin/events']) await assertError(await fetch(`${d.url}${path}`), 403, 'forbidden');
  } finally {
    await d.stop();
    d.cleanup();
  }
});
