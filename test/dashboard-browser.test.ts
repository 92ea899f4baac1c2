// The dashboard in a real browser (Debian's chromium through playwright-core, see
// support/browser.ts) against simulated models: the page shows each model's state, its Wake
// button switches models (checked through /health and the simulators' ledger), the timeline
// and event list show the switch (also on a page opened later), the log tail shows new lines, and with an admin key the page
// asks for it, keeps it in sessionStorage only and never puts it in a URL.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { chromiumMissing, useBrowser, type Browser } from './support/browser.js';
import { Daemon, useDaemon } from './support/daemon.js';
import { crashes, maxUsage } from './support/sim.js';

/** A new tab on the dashboard that fails the test on any script error or failed request. */
async function openDashboard(b: Browser, d: Daemon): Promise<{ page: Page; problems: string[]; urls: string[] }> {
  const page = await b.context.newPage();
  const problems: string[] = [];
  const urls: string[] = [];
  page.on('pageerror', (err) => problems.push(`script error: ${err.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('request', (r) => urls.push(r.url()));
  await page.goto(`${d.url}/ui`);
  return { page, problems, urls };
}

const GPU_MB = 1000; // the simulator's default GPU, each model's share 600

const row = (page: Page, model: string): ReturnType<Page['locator']> => page.locator(`#models tbody tr[data-model="${model}"]`);

/** Waits until the page shows `state` for `model` in its table. */
async function shownState(page: Page, model: string, state: string): Promise<void> {
  await row(page, model).locator('td.state', { hasText: new RegExp(`^${state}$`) }).waitFor();
}

describe('dashboard in chromium, no admin key', () => {
  let d: Daemon;
  let b: Browser | null = null;
  useDaemon((started) => (d = started), { models: [{ name: 'a' }, { name: 'org/b' }], args: ['--min-active-secs', '0'] });
  useBrowser((started) => (b = started));

  test('shows each model with its state; Wake switches models; the timeline and events show the switch', async (t) => {
    if (!b) return t.skip(chromiumMissing() ?? 'no browser');
    const { page, problems } = await openDashboard(b, d);
    const h = await d.health();
    assert.equal(h.active_model, 'org/b');
    for (const m of h.models) await shownState(page, m.id, m.state);
    assert.deepEqual(await page.locator('#models tbody th').allTextContents(), ['a', 'org/b']);
    // Each model's GPUs and its share of them.
    assert.deepEqual(await page.locator('#models tbody td:nth-of-type(2)').allTextContents(), ['0 · whole', '0 · whole']);
    // The buttons of the awake model: no wake; of the sleeping one: no sleep.
    assert.equal(await row(page, 'org/b').getByRole('button', { name: 'Wake org/b' }).isDisabled(), true);
    assert.equal(await row(page, 'a').getByRole('button', { name: 'Sleep a' }).isDisabled(), true);

    const mark = d.ledger().length;
    await page.getByRole('button', { name: 'Wake a' }).click();
    await d.waitHealth((x) => x.active_model === 'a', 'a awake');
    await shownState(page, 'a', 'awake');
    await shownState(page, 'org/b', 'asleep');
    await page.locator('#action-status', { hasText: /a: wake done in .*; now awake/ }).waitFor();
    // The simulators saw org/b released before a was resumed, nothing crashed, and the GPU was
    // never oversubscribed.
    const ledger = d.ledger();
    const controls = ledger.slice(mark).filter((e) => e.event === 'release' || e.event === 'resume').map((e) => `${e.event} ${e.model}`);
    assert.deepEqual(controls, ['release org/b', 'resume a']);
    assert.deepEqual(crashes(ledger), []);
    assert.ok(maxUsage(ledger) <= GPU_MB, `GPU never oversubscribed (max ${maxUsage(ledger)} MB)`);

    // The switch is in the event list and drawn on the timeline (one bar on the switch lane).
    await page.locator('#events li', { hasText: 'switch org/b → a: ok' }).waitFor();
    await page.locator('#events li', { hasText: 'a: wake done' }).waitFor();
    await page.locator('#timeline rect.switch-ok').first().waitFor();
    // Each model has its lane, with its states drawn as bars.
    assert.ok(await page.locator('#timeline rect.st-awake').count() >= 2);
    assert.deepEqual(problems, []);
    await page.close();

    // A page opened after the switch shows it too, from the feed's history.
    const { page: later, problems: laterProblems } = await openDashboard(b, d);
    await later.locator('#events li', { hasText: 'switch org/b → a: ok' }).waitFor();
    await later.locator('#timeline rect.switch-ok').first().waitFor();
    assert.deepEqual(laterProblems, []);
    await later.close();
  });

  test('the log tail shows the existing lines, then a line a request writes', async (t) => {
    if (!b) return t.skip(chromiumMissing() ?? 'no browser');
    const { page, problems } = await openDashboard(b, d);
    await page.locator('#log-model').selectOption('a');
    await page.locator('#log-stream').selectOption('stdout');
    const log = page.locator('#log');
    await log.filter({ hasText: /Uvicorn running|server is fired up|ready to roll/i }).waitFor();
    const count = (text: string | null): number => (text ?? '').split('"POST /v1/completions HTTP/1.1" 200').length - 1;
    const had = count(await log.textContent());
    assert.equal((await d.post('/v1/completions', { model: 'a', prompt: 'x', max_tokens: 1 })).status, 200);
    await page.waitForFunction(
      (n) => (document.getElementById('log')?.textContent ?? '').split('"POST /v1/completions HTTP/1.1" 200').length - 1 > n,
      had,
    );
    // The Log button of a row shows that model's log.
    await row(page, 'org/b').getByRole('button', { name: 'Show the log of org/b' }).click();
    assert.equal(await page.locator('#log-model').inputValue(), 'org/b');
    await log.filter({ hasText: /Uvicorn running|server is fired up|ready to roll/i }).waitFor();
    assert.deepEqual(problems, []);
    await page.close();
  });
});

describe('dashboard in chromium with an admin key', () => {
  const key = 'sk-ui-browser-7d1e0a9c44';
  let d: Daemon;
  let b: Browser | null = null;
  useDaemon((started) => (d = started), { models: [{ name: 'm' }], env: { SGLANGMUX_ADMIN_API_KEY: key } });
  useBrowser((started) => (b = started));

  test('asks for the key, refuses a wrong one, works with the right one, keeps it in this tab only', async (t) => {
    if (!b) return t.skip(chromiumMissing() ?? 'no browser');
    const { page, urls } = await openDashboard(b, d);
    const form = page.locator('#key-form');
    await form.waitFor();
    await page.locator('#key-why', { hasText: 'needs its admin API key' }).waitFor();
    assert.equal(await page.locator('#models tbody tr').count(), 0);

    await page.getByLabel('Admin API key', { exact: true }).fill('sk-wrong');
    await page.getByRole('button', { name: 'Use key' }).click();
    await page.locator('#key-why', { hasText: 'That key was refused' }).waitFor();

    await page.getByLabel('Admin API key', { exact: true }).fill(key);
    await page.getByRole('button', { name: 'Use key' }).click();
    await shownState(page, 'm', 'awake');
    assert.equal(await form.isHidden(), true);
    await page.locator('#events li', { hasText: 'm: start done' }).waitFor();
    await page.locator('#log').filter({ hasText: /\S/ }).waitFor();
    // Kept in sessionStorage only: not in localStorage, not in a cookie, never in a URL.
    assert.equal(await page.evaluate(() => sessionStorage.getItem('sglangmux-admin-key')), key);
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    assert.deepEqual(await b.context.cookies(), []);
    assert.ok(urls.length > 3);
    assert.ok(urls.every((u) => !u.includes(key)), urls.join('\n'));

    // A reload in the same tab keeps it; Forget asks again.
    await page.reload();
    await shownState(page, 'm', 'awake');
    await page.getByRole('button', { name: 'Forget admin key' }).click();
    await form.waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('sglangmux-admin-key')), null);
    // A new tab (a new session) must ask again.
    const { page: other } = await openDashboard(b, d);
    await other.locator('#key-form').waitFor();
    assert.ok(!d.output.includes(key));
    await other.close();
    await page.close();
  });
});
