// Where each model lives (src/placement.ts), one table row per rule, then the same rules read
// from a launch script's text (src/launch-script.ts), where a bad value names the script.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseLaunchScript, ScriptError } from '../src/launch-script.js';
import { type Placement, PlacementError, placementOf, type PlacementText } from '../src/placement.js';

const NONE: PlacementText = {
  visibleDevices: undefined, tpSize: undefined, dpSize: undefined, dpAttention: false, baseGpuId: undefined, memFraction: undefined,
};

interface Row {
  readonly rule: string;
  readonly text: Partial<PlacementText>;
  readonly expect: Placement | RegExp;
}

const ROWS: Row[] = [
  { rule: 'nothing written: GPU 0, whole', text: {}, expect: { gpus: [0], share: null } },
  { rule: 'a fraction is the share of each GPU', text: { memFraction: '0.4' }, expect: { gpus: [0], share: 0.4 } },
  { rule: 'a fraction of 1 is allowed', text: { memFraction: '1' }, expect: { gpus: [0], share: 1 } },
  { rule: 'tp GPUs from 0', text: { tpSize: '2' }, expect: { gpus: [0, 1], share: null } },
  { rule: 'tp × dp GPUs', text: { tpSize: '2', dpSize: '2' }, expect: { gpus: [0, 1, 2, 3], share: null } },
  { rule: 'DP attention runs dp inside the tp GPUs', text: { tpSize: '4', dpSize: '4', dpAttention: true }, expect: { gpus: [0, 1, 2, 3], share: null } },
  { rule: 'from --base-gpu-id', text: { tpSize: '2', baseGpuId: '3' }, expect: { gpus: [3, 4], share: null } },
  { rule: 'CUDA_VISIBLE_DEVICES maps positions to physical ids', text: { visibleDevices: '6,7' }, expect: { gpus: [6], share: null } },
  { rule: 'base counted within the visible list', text: { visibleDevices: '4, 2,7', tpSize: '2', baseGpuId: '1', memFraction: '.45' }, expect: { gpus: [2, 7], share: 0.45 } },
  { rule: 'beyond the visible list', text: { visibleDevices: '0,1', tpSize: '2', baseGpuId: '1' }, expect: /needs 2 GPU\(s\) from --base-gpu-id 1, but CUDA_VISIBLE_DEVICES=0,1 lists 2/ },
  { rule: 'tp × dp beyond the visible list', text: { visibleDevices: '3', dpSize: '2' }, expect: /lists 1/ },
  { rule: 'an empty visible list', text: { visibleDevices: '' }, expect: /CUDA_VISIBLE_DEVICES='': .*GPU indices/ },
  { rule: 'GPU UUIDs: unknown', text: { visibleDevices: 'GPU-8f6b1c2e' }, expect: { gpus: null, share: null, unknown: 'CUDA_VISIBLE_DEVICES=GPU-8f6b1c2e names GPUs by UUID, which sglangmux does not map to indices' } },
  { rule: 'a non-literal visible list: unknown', text: { visibleDevices: '$GPUS' }, expect: { gpus: null, share: null, unknown: 'CUDA_VISIBLE_DEVICES= $GPUS uses shell expansion, which sglangmux does not evaluate' } },
  { rule: 'a fraction of 0', text: { memFraction: '0' }, expect: /invalid --mem-fraction-static '0'/ },
  { rule: 'a fraction above 1', text: { memFraction: '1.5' }, expect: /above 0 and at most 1/ },
  { rule: 'a fraction that is no number', text: { memFraction: 'half' }, expect: /invalid --mem-fraction-static 'half'/ },
  { rule: 'an empty fraction', text: { memFraction: '' }, expect: /invalid --mem-fraction-static ''/ },
  { rule: 'a non-literal fraction: unknown', text: { memFraction: '${FRAC}' }, expect: { gpus: null, share: null, unknown: '--mem-fraction-static ${FRAC} uses shell expansion, which sglangmux does not evaluate' } },
  { rule: 'tp of 0', text: { tpSize: '0' }, expect: /invalid --tp-size '0'/ },
  { rule: 'a fractional tp', text: { tpSize: '1.5' }, expect: /invalid --tp-size '1.5'/ },
  { rule: 'a non-literal tp: unknown', text: { tpSize: '$TP' }, expect: { gpus: null, share: null, unknown: '--tp-size $TP uses shell expansion, which sglangmux does not evaluate' } },
  { rule: 'a negative base', text: { baseGpuId: '-1' }, expect: /invalid --base-gpu-id '-1'/ },
];

describe('placement', () => {
  for (const row of ROWS) {
    test(row.rule, () => {
      const run = (): Placement => placementOf({ ...NONE, ...row.text });
      if (row.expect instanceof RegExp) assert.throws(run, (err: Error) => err instanceof PlacementError && (row.expect as RegExp).test(err.message));
      else assert.deepEqual(run(), row.expect);
    });
  }
});

describe('placement read from a script', () => {
  const script = (lines: string): string => `MODEL_NAME=m\nPORT=30001\n${lines}\n`;

  test('export and quotes, --tp and --dp, flags with =', () => {
    const spec = parseLaunchScript('/p.sh', script(
      'export CUDA_VISIBLE_DEVICES="2,3,4,5"  # the second pair\nexec python3 -m sglang.launch_server --tp 2 --base-gpu-id=2 --mem-fraction-static 0.4',
    ));
    assert.deepEqual(spec.placement, { gpus: [4, 5], share: 0.4 });
    const dp = parseLaunchScript('/q.sh', script("CUDA_VISIBLE_DEVICES='1,0' sglang serve --dp 2 --tensor-parallel-size=1"));
    assert.deepEqual([dp.placement, dp.dpSize], [{ gpus: [1, 0], share: null }, 2]);
  });

  test('CUDA_VISIBLE_DEVICES not set in the script comes from the environment it runs with', () => {
    assert.deepEqual(parseLaunchScript('/e.sh', script('exec sglang --tp-size 2'), { CUDA_VISIBLE_DEVICES: '6,7' }).placement, { gpus: [6, 7], share: null });
    assert.deepEqual(parseLaunchScript('/f.sh', script('CUDA_VISIBLE_DEVICES=1 exec sglang'), { CUDA_VISIBLE_DEVICES: '6,7' }).placement.gpus, [1]);
  });

  test('a value sglangmux cannot read leaves the placement unknown; the script still loads', () => {
    const spec = parseLaunchScript('/v.sh', script('exec sglang --dp-size "$DP" --tp 2'));
    assert.deepEqual([spec.placement.gpus, spec.dpSize], [null, 1]);
    assert.equal(parseLaunchScript('/u.sh', script('exec sglang'), { CUDA_VISIBLE_DEVICES: 'GPU-8f6b1c2e' }).placement.gpus, null);
  });

  test('a bad value is a ScriptError naming the script', () => {
    for (const [lines, problem] of [
      ['CUDA_VISIBLE_DEVICES=0\nexec sglang --tp-size 2', /\/bad\.sh: needs 2 GPU\(s\)/],
      ['exec sglang --mem-fraction-static 1.2', /\/bad\.sh: invalid --mem-fraction-static '1.2'/],
    ] as const) {
      assert.throws(() => parseLaunchScript('/bad.sh', script(lines)), (err: Error) => err instanceof ScriptError && problem.test(err.message));
    }
  });
});
