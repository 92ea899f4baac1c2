// A real browser for the dashboard's tests: Debian's chromium (scripts/install-test-deps.sh)
// driven by playwright-core, headless, in a fresh profile, with nothing fetched from the network
// (no browser download, no background services).
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** Why no browser can be started here, or null. */
export function chromiumMissing(): string | null {
  return existsSync(CHROMIUM) ? null : `${CHROMIUM} is not installed: run bash scripts/install-test-deps.sh`;
}

/** A running chromium in its own throwaway profile. */
export interface Browser {
  readonly context: BrowserContext;
  close(): Promise<void>;
}

export async function startBrowser(viewport = { width: 1280, height: 900 }): Promise<Browser> {
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

/** A browser for a suite of tests, handed to `set`; null when chromium is missing outside CI
 * (each test then skips, saying why). In CI a missing chromium fails the suite. */
export function useBrowser(set: (b: Browser | null) => void): void {
  let b: Browser | null = null;
  before(async () => {
    const missing = chromiumMissing();
    if (missing && process.env.CI) throw new Error(missing);
    b = missing ? null : await startBrowser();
    set(b);
  });
  after(async () => {
    await b?.close();
  });
}
