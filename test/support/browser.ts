// A real browser for the dashboard's tests: Debian's chromium (scripts/install-test-deps.sh)
// driven by playwright-core, headless, in a fresh profile, with nothing fetched from the network
// (no browser download, no background services).
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** A running chromium in its own throwaway profile. */
export interface Browser {
  readonly context: BrowserContext;
  close(): Promise<void>;
}

/** Starts chromium; null after skipping the test (outside CI) when it is not installed. */
export async function startBrowser(t: TestContext | null, viewport = { width: 1280, height: 900 }): Promise<Browser | null> {
  if (!existsSync(CHROMIUM)) {
    const why = `${CHROMIUM} is not installed: run bash scripts/install-test-deps.sh`;
    if (process.env.CI || t === null) throw new Error(why);
    t.skip(why);
    return null;
  }
  const profile = mkdtempSync(join(tmpdir(), 'sglangmux-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: FLAGS, viewport,
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
