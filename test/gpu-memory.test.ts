// The nvidia-smi reader (src/gpu-memory.ts) against fake nvidia-smi scripts: readings summed over
// GPUs, a sampler that ends mid-wait is started again, a GPU without a memory figure or a
// missing binary turns the check off instead of stalling switches, and close() leaves no process.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { GpuMemory, parseSmiTimestamp } from '../src/gpu-memory.js';
import { pidGone } from './support/daemon.js';

const dir = mkdtempSync(join(tmpdir(), 'sglangmux-gpu-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A fake nvidia-smi: `body` is bash run with STAMP set to nvidia-smi's timestamp format; every
 * start appends its pid to `<name>.starts`. */
function fakeSmi(name: string, body: string): { command: string; starts: () => string[] } {
  const command = join(dir, name);
  const starts = join(dir, `${name}.starts`);
  writeFileSync(command, `#!/usr/bin/env bash\necho $$ >> '${starts}'\nstamp() { date '+%Y/%m/%d %H:%M:%S.%3N'; }\n${body}\n`, { mode: 0o755 });
  return { command, starts: () => readFileSync(starts, 'utf8').trim().split('\n') };
}

test('nvidia-smi timestamps (it runs with TZ=UTC) are read as UTC with milliseconds', () => {
  assert.equal(parseSmiTimestamp('2026/11/27 10:20:01.123'), Date.UTC(2026, 10, 27, 10, 20, 1, 123));
  assert.equal(parseSmiTimestamp('2026/11/27 10:20:01'), Date.UTC(2026, 10, 27, 10, 20, 1, 0));
  assert.equal(parseSmiTimestamp('[N/A]'), null);
});

test('a reading is the sum over all GPUs, from one nvidia-smi left running', async () => {
  const smi = fakeSmi('two-gpus', 'while :; do echo "$(stamp), 0, 100"; echo "$(stamp), 1, 250"; sleep 0.05; done');
  const gpu = new GpuMemory(smi.command);
  assert.equal(await gpu.used(), 350);
  assert.equal(await gpu.used(Date.now()), 350, 'a reading sampled after now');
  assert.equal(smi.starts().length, 1);
  await gpu.close();
  assert.ok(pidGone(Number(smi.starts()[0])), 'nvidia-smi still runs after close()');
});

test('free memory is the sum of total minus used over all GPUs; unknown without memory.total', async () => {
  const smi = fakeSmi('totals', 'while :; do echo "$(stamp), 0, 100, 1000"; echo "$(stamp), 1, 250, 1000"; sleep 0.05; done');
  const gpu = new GpuMemory(smi.command);
  assert.equal(await gpu.free(), 1650);
  await gpu.close();
  const old = fakeSmi('no-totals', 'while :; do echo "$(stamp), 0, 100"; sleep 0.05; done');
  const gpu2 = new GpuMemory(old.command);
  assert.equal(await gpu2.free(), null);
  assert.equal(await gpu2.used(), 100);
  await gpu2.close();
});

test('a sampler that ends while a switch waits for freed memory is started again and the wait goes on', async () => {
  // First run: memory still held, then it dies; the runs after: memory freed.
  const smi = fakeSmi('dies-once', `if [ "$(wc -l < '${join(dir, 'dies-once.starts')}')" -eq 1 ]; then echo "$(stamp), 0, 500"; echo "$(stamp), 0, 500"; exit 1; fi\nwhile :; do echo "$(stamp), 0, 100"; sleep 0.05; done`);
  const gpu = new GpuMemory(smi.command);
  const before = await gpu.used();
  assert.equal(before, 500);
  await gpu.waitBelow(before, 0, 20_000, 'model a went to sleep');
  assert.equal(await gpu.used(), 100);
  assert.equal(smi.starts().length, 2);
  await gpu.close();
});

test('a sampler that keeps ending is started again once, then left alone for a while', async () => {
  const smi = fakeSmi('dies-always', 'echo "$(stamp), 0, 500"; echo "$(stamp), 0, 500"; exit 1');
  const gpu = new GpuMemory(smi.command);
  const before = await gpu.used();
  assert.equal(before, 500);
  await gpu.waitBelow(before, 0, 20_000, 'model a went to sleep');
  assert.equal(await gpu.used(), null);
  assert.equal(smi.starts().length, 2, 'one start again after an end, then a pause');
  await gpu.close();
});

test('a GPU without a memory figure ([N/A]) turns the check off at once instead of stalling each switch', async () => {
  const smi = fakeSmi('n-a', 'while :; do echo "$(stamp), 0, [N/A]"; sleep 0.05; done');
  const gpu = new GpuMemory(smi.command);
  assert.equal(await gpu.used(), null);
  assert.equal(await gpu.used(), null);
  await gpu.waitBelow(500, 0, 20_000, 'model a went to sleep');
  assert.equal(smi.starts().length, 1, 'not started again for every reading');
  await gpu.close();
  assert.ok(pidGone(Number(smi.starts()[0])));
});

test('nvidia-smi that ends without a reading ("No devices were found") is not started again at every reading', async () => {
  const smi = fakeSmi('no-devices', 'echo "No devices were found"; exit 6');
  const gpu = new GpuMemory(smi.command);
  assert.equal(await gpu.used(), null);
  assert.equal(await gpu.used(), null);
  assert.equal(smi.starts().length, 1);
  await gpu.close();
});

test('an nvidia-smi that hangs without a line is given up on once, not waited for at every reading', async () => {
  const smi = fakeSmi('hangs', 'exec sleep 600');
  const gpu = new GpuMemory(smi.command);
  const started = Date.now();
  assert.equal(await gpu.used(), null);
  await gpu.waitBelow(500, 0, 60_000, 'model a went to sleep');
  assert.equal(await gpu.used(), null);
  const took = Date.now() - started;
  // 10 s for a first line, then nothing more: not 10 s + the 60 s wait + 10 s.
  assert.ok(took < 15_000, `three readings of a hung nvidia-smi took ${took} ms`);
  assert.equal(smi.starts().length, 1);
  await gpu.close();
  assert.ok(pidGone(Number(smi.starts()[0])), 'the hung nvidia-smi was not stopped');
});

test('without nvidia-smi there is nothing to check', async () => {
  const gpu = new GpuMemory(join(dir, 'not-installed'));
  assert.equal(await gpu.used(), null);
  await gpu.waitBelow(500, 0, 20_000, 'model a went to sleep');
  await gpu.close();
});
