// Takes the README's screenshot of the dashboard (docs/dashboard.png): sglangmux on two simulated
// models with sleep and wake slowed down to look like a small real model, three clients that
// move together from one model to the other every 8 s, and the page in chromium at 1280 px.
//   npm run build && node --import tsx scripts/dashboard-screenshot.ts [out.png]
// (needs chromium: scripts/install-test-deps.sh). The committed one was then made smaller with
// `pngquant --quality=70-90` (Debian package pngquant).
import { startBrowser } from '../test/support/browser.js';
import { Daemon } from '../test/support/daemon.js';

const out = process.argv[2] ?? 'docs/dashboard.png';
const MODELS = ['Qwen/Qwen3-0.6B', 'HuggingFaceTB/SmolLM2-360M-Instruct'];
const PERIOD_MS = 8000;
const RUN_MS = 50_000;

const d = await Daemon.start({
  models: MODELS.map((name) => ({ name })),
  args: ['--min-active-secs', '2'],
  env: { SGLANG_SIM_RELEASE_MS: '300', SGLANG_SIM_RESUME_MS: '500', SGLANG_SIM_TOKEN_MS: '15' },
});
const browser = await startBrowser({ width: 1280, height: 830 });
try {
  const page = await browser.context.newPage();
  await page.goto(`${d.url}/ui`);
  await page.locator('#window').selectOption('60');
  await page.locator('#log-stream').selectOption('stdout');

  const started = Date.now();
  const client = async (): Promise<void> => {
    while (Date.now() - started < RUN_MS) {
      const model = MODELS[Math.floor((Date.now() - started) / PERIOD_MS) % 2]!;
      await d.post('/v1/chat/completions', { model, max_tokens: 20 + Math.floor(Math.random() * 40), messages: [{ role: 'user', content: 'hi' }] });
    }
  };
  const shot = (async () => {
    await new Promise((r) => setTimeout(r, RUN_MS - 300));
    await page.screenshot({ path: out, fullPage: true });
  })();
  await Promise.all([client(), client(), client(), shot]);
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await d.stop();
  d.cleanup();
}
