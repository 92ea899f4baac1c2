// Which physical GPUs a server's ranks run on, as SGLang and CUDA pick them: tp × dp ranks (tp
// alone with --enable-dp-attention, where the data-parallel ranks share the tensor-parallel
// GPUs) on consecutive CUDA devices from --base-gpu-id. CUDA numbers its devices within
// CUDA_VISIBLE_DEVICES when it is set: device i is the i-th GPU listed, and the list ends at the
// first entry that is not a GPU of this host (as the CUDA runtime reads it).
import type { SimArgs } from './args.js';

/** A rank asked for a CUDA device that does not exist: SGLang dies at start, as on a real host. */
export class DeviceError extends Error {}

export function devicesOf(args: Pick<SimArgs, 'tpSize' | 'dpSize' | 'dpAttention' | 'baseGpuId'>, visibleDevices: string | undefined, hostGpus: number): number[] {
  const host = Array.from({ length: hostGpus }, (_, i) => i);
  const visible = visibleDevices === undefined ? host : visibleList(visibleDevices, hostGpus);
  if (visible.length === 0) throw new DeviceError('RuntimeError: No CUDA GPUs are available');
  const ranks = args.tpSize * (args.dpAttention ? 1 : args.dpSize);
  const devices = Array.from({ length: ranks }, (_, i) => args.baseGpuId + i);
  const missing = devices.find((d) => d >= visible.length);
  if (missing !== undefined) {
    throw new DeviceError(`torch.AcceleratorError: CUDA error: invalid device ordinal (device ${missing}; ${visible.length} visible)`);
  }
  return devices.map((d) => visible[d]!);
}

function visibleList(text: string, hostGpus: number): number[] {
  const out: number[] = [];
  for (const entry of text.split(',').map((e) => e.trim())) {
    if (!/^\d+$/.test(entry) || Number(entry) >= hostGpus || out.includes(Number(entry))) break;
    out.push(Number(entry));
  }
  return out;
}
