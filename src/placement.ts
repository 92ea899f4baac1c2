// Where a model's server lives: which GPUs its ranks run on and what share of each it takes.
// launch-script.ts finds the values in the script's text; this turns them into physical GPU
// ids. A value that is wrong is refused; one sglangmux cannot read (shell expansion, GPU UUIDs)
// leaves the placement unknown: such scripts are legitimate and keep working.

export type Placement =
  | {
    /** Physical GPU ids (as nvidia-smi numbers them) that the model's ranks run on. */
    readonly gpus: readonly number[];
    /** `--mem-fraction-static`: the share of each of those GPUs it takes; null: the whole GPU. */
    readonly share: number | null;
  }
  /** Not known from the script's text, for the reason given. */
  | { readonly gpus: null; readonly share: null; readonly unknown: string };

/** The settings that place a model, as written in its script (undefined: not written). */
export interface PlacementText {
  readonly visibleDevices: string | undefined;
  readonly tpSize: string | undefined;
  readonly dpSize: string | undefined;
  /** `--enable-dp-attention`: the data-parallel ranks run inside the tensor-parallel GPUs. */
  readonly dpAttention: boolean;
  readonly baseGpuId: string | undefined;
  readonly memFraction: string | undefined;
}

/** A placement setting that is wrong; the caller names the script. */
export class PlacementError extends Error {
  constructor(problem: string) {
    super(problem);
    this.name = 'PlacementError';
  }
}

/** A placement setting sglangmux cannot read from the text (the server may still run fine). */
export class PlacementUnknown extends Error {
  constructor(problem: string) {
    super(problem);
    this.name = 'PlacementUnknown';
  }
}

function literal(what: string, text: string): string {
  if (text.includes('$') || text.includes('`')) {
    throw new PlacementUnknown(`${what} ${text} uses shell expansion, which sglangmux does not evaluate`);
  }
  return text;
}

/** A whole number at least `min` (`fallback` when not written). */
export function wholeNumber(flag: string, text: string | undefined, min: number, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(literal(flag, text));
  if (!/^\d+$/.test(text) || n < min) throw new PlacementError(`invalid ${flag} '${text}': expected a whole number from ${min}`);
  return n;
}

function share(text: string | undefined): number | null {
  if (text === undefined) return null;
  const n = Number(literal('--mem-fraction-static', text));
  if (text.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 1) {
    throw new PlacementError(`invalid --mem-fraction-static '${text}': expected a fraction above 0 and at most 1`);
  }
  return n;
}

/** The GPU indices CUDA_VISIBLE_DEVICES lists, in its order (null: not set, every GPU). */
function visible(text: string | undefined): number[] | null {
  if (text === undefined) return null;
  const ids = literal('CUDA_VISIBLE_DEVICES=', text).split(',').map((s) => s.trim());
  if (ids.some((id) => /^(GPU|MIG)-/i.test(id))) {
    throw new PlacementUnknown(`CUDA_VISIBLE_DEVICES=${text} names GPUs by UUID, which sglangmux does not map to indices`);
  }
  if (ids.some((id) => !/^\d+$/.test(id))) {
    throw new PlacementError(`CUDA_VISIBLE_DEVICES='${text}': sglangmux reads a list of GPU indices such as 0,1`);
  }
  return ids.map(Number);
}

/** A model runs tp × dp ranks (tp with DP attention) on consecutive GPUs from --base-gpu-id,
 * counted within CUDA_VISIBLE_DEVICES when it is set. */
export function placementOf(text: PlacementText): Placement {
  try {
    return knownPlacement(text);
  } catch (err) {
    if (err instanceof PlacementUnknown) return { gpus: null, share: null, unknown: err.message };
    throw err;
  }
}

function knownPlacement(text: PlacementText): Placement {
  const tp = wholeNumber('--tp-size', text.tpSize, 1, 1);
  const base = wholeNumber('--base-gpu-id', text.baseGpuId, 0, 0);
  const dp = wholeNumber('--dp-size', text.dpSize, 1, 1);
  const count = tp * (text.dpAttention ? 1 : dp);
  const positions = Array.from({ length: count }, (_, i) => base + i);
  const listed = visible(text.visibleDevices);
  if (listed !== null && base + count > listed.length) {
    throw new PlacementError(
      `needs ${count} GPU(s) from --base-gpu-id ${base}, but CUDA_VISIBLE_DEVICES=${text.visibleDevices} lists ${listed.length}`,
    );
  }
  return { gpus: listed === null ? positions : positions.map((p) => listed[p]!), share: share(text.memFraction) };
}
