// The model's GPU memory, split by the tags SGLang's release/resume take.

export const TAGS = ['weights', 'kv_cache', 'cuda_graph'] as const;
export type Tag = (typeof TAGS)[number];

/** MB per tag for a model share: weights 60%, kv_cache 35%, cuda_graph the rest (5%). */
export function tagSizes(shareMb: number): Record<Tag, number> {
  const weights = Math.round(shareMb * 0.6);
  const kv = Math.round(shareMb * 0.35);
  return { weights, kv_cache: kv, cuda_graph: shareMb - weights - kv };
}

/** What a server takes when it loads. Without --mem-fraction-static the fixed split of
 * `modelMb`. With fraction F, SGLang sizes its KV cache from the memory free at start: F × free
 * minus the weights and CUDA graphs (so a server started while others hold memory gets a smaller
 * KV cache). With `graphsOutsideMb` > 0 the CUDA graphs take that much in the headroom the
 * fraction leaves instead, as a real server captures them after its KV cache: the server then
 * takes more than its fraction. Null when nothing would be left for the KV cache (out of memory). */
export function sizesAtStart(modelMb: number, fraction: number | null, freeMb: number, graphsOutsideMb = 0): Record<Tag, number> | null {
  const fixed = tagSizes(modelMb);
  if (fraction === null) return fixed;
  const inside = graphsOutsideMb > 0 ? 0 : fixed.cuda_graph;
  const kv = Math.floor(fraction * freeMb) - fixed.weights - inside;
  return kv > 0 ? { weights: fixed.weights, kv_cache: kv, cuda_graph: graphsOutsideMb > 0 ? graphsOutsideMb : fixed.cuda_graph } : null;
}

/** Parses the body of release/resume: `{}`, `{"tags": null}`, `{"tags": []}` mean all tags.
 * Unknown tag names are ignored, as SGLang only tests membership of the known ones. */
export function parseTags(body: unknown): Tag[] | string {
  if (body === null || body === undefined) return [...TAGS];
  if (typeof body !== 'object' || Array.isArray(body)) return 'body must be a JSON object';
  const tags = (body as { tags?: unknown }).tags;
  if (tags === undefined || tags === null) return [...TAGS];
  if (!Array.isArray(tags) || !tags.every((t): t is string => typeof t === 'string')) {
    return 'tags must be null or a list of strings';
  }
  if (tags.length === 0) return [...TAGS];
  return TAGS.filter((t) => tags.includes(t));
}

/** Which tags are released right now, and whether the weights were thrown away. */
export class MemoryState {
  readonly released = new Set<Tag>();
  /** Weights were released without --enable-weights-cpu-backup and not reloaded since. */
  weightsDiscarded = false;

  constructor(
    readonly sizes: Record<Tag, number>,
    /** --enable-memory-saver: release really frees GPU memory. */
    readonly saver: boolean,
  ) {}

  get totalMb(): number {
    return this.mbOf(TAGS);
  }

  mbOf(tags: readonly Tag[]): number {
    return tags.reduce((sum, t) => sum + this.sizes[t], 0);
  }

  /** A forward pass would touch freed memory (hazard 2). Without the memory saver nothing was
   * freed, so the GPU state is intact even after a "release". */
  get gpuReleased(): boolean {
    return this.saver && this.released.size > 0;
  }
}
