// Test tools installed outside npm by scripts/install-test-deps.sh (Python venvs under .test-deps/).
// In CI a missing tool fails the test; elsewhere the test is skipped, saying what to run.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

export const testDeps = fileURLToPath(new URL('../../.test-deps', import.meta.url));

/** The path of `.test-deps/<rel>` (for example `bin/uv` or `litellm/bin/litellm`), or null after
 * skipping the test (outside CI) when it is not installed. */
export function testTool(t: TestContext, rel: string): string | null {
  const path = join(testDeps, rel);
  if (existsSync(path)) return path;
  const why = `${rel} is not installed: run bash scripts/install-test-deps.sh`;
  if (process.env.CI) throw new Error(why);
  t.skip(why);
  return null;
}
