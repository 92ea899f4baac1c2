// Which models may be awake together, and whom to put to sleep to make room: pure functions of
// the models' placements (src/placement.ts) and states, in the manner of Kubernetes' fit check
// (a set fits, or here are the reasons it does not). docs/scheduling.md, "Several models awake".
import { HOLDING, type ModelView } from './policy.js';

/** Whether two placements share a GPU (an unknown placement shares every GPU). */
export function overlaps(a: readonly number[] | null, b: readonly number[] | null): boolean {
  return a === null || b === null || a.some((g) => b.includes(g));
}

const shareText = (share: number): string => String(Math.round(share * 1000) / 1000);

/** Why these models cannot hold GPU memory together (empty: they fit). On each GPU the shares
 * of its models add up to at most `budget`; a model with no share takes its GPUs whole and one
 * whose GPUs are unknown is planned alone. A model alone always fits. */
export function fitProblems(models: readonly ModelView[], budget: number): string[] {
  if (models.length < 2) return [];
  const unknown = models.find((m) => m.gpus === null);
  if (unknown) return [`${unknown.name}'s GPUs are unknown: it runs alone`];
  const perGpu = new Map<number, ModelView[]>();
  for (const m of models) for (const g of m.gpus!) perGpu.set(g, [...(perGpu.get(g) ?? []), m]);
  const problems: string[] = [];
  for (const [gpu, on] of [...perGpu].sort(([a], [b]) => a - b)) {
    if (on.length < 2) continue;
    const whole = on.find((m) => m.share === null);
    if (whole) {
      problems.push(`GPU ${gpu}: ${whole.name} takes the whole GPU`);
      continue;
    }
    const sum = on.reduce((s, m) => s + m.share!, 0);
    if (sum > budget + 1e-9) {
      problems.push(`GPU ${gpu}: ${on.map((m) => `${m.name} ${shareText(m.share!)}`).join(' + ')} = ${shareText(sum)} > budget ${budget}`);
    }
  }
  return problems;
}

export type Room =
  /** Put these awake models to sleep (none: it fits beside them), then wake the target. */
  | { readonly ok: true; readonly victims: readonly ModelView[] }
  /** Not now: something on its GPUs is changing (one switch at a time per GPU). */
  | { readonly ok: false; readonly blocked: string };

/** The awake models to put to sleep so that `target` can wake: only models sharing its GPUs,
 * idle before busy, least recently used first, no more than needed. A cold start takes all of
 * them (SGLang sizes its memory from what is free at start). */
export function makeRoom(target: ModelView, models: readonly ModelView[], budget: number): Room {
  const others = models.filter((m) => m !== target);
  const switching = others.filter((m) => m.busy);
  const locked = (m: ModelView): ModelView | undefined => switching.find((s) => s !== m && overlaps(s.gpus, m.gpus));
  const lock = locked(target);
  if (lock) return { ok: false, blocked: `${lock.name} is switching on ${target.name}'s GPUs` };
  const resident = others.filter((m) => HOLDING.has(m.state));
  const onItsGpus = resident.filter((m) => overlaps(m.gpus, target.gpus));
  const changing = onItsGpus.find((m) => m.state !== 'awake');
  if (changing) return { ok: false, blocked: `${changing.name} is ${changing.state}` };
  const victims = target.coldStart ? onItsGpus : fewestVictims(target, resident, onItsGpus, budget);
  for (const v of victims) {
    const other = locked(v);
    if (other) return { ok: false, blocked: `${v.name} must make room, but ${other.name} is switching on its GPUs` };
  }
  return { ok: true, victims };
}

function fewestVictims(target: ModelView, resident: readonly ModelView[], candidates: readonly ModelView[], budget: number): ModelView[] {
  const idle = (m: ModelView): boolean => m.inflight === 0 && m.waiting === 0;
  const order = [...candidates].sort((a, b) => Number(idle(b)) - Number(idle(a)) || a.lastUsed - b.lastUsed);
  const fitsWithout = (gone: readonly ModelView[]): boolean =>
    fitProblems([...resident.filter((m) => !gone.includes(m)), target], budget).length === 0;
  const chosen: ModelView[] = [];
  for (const m of order) {
    if (fitsWithout(chosen)) break;
    chosen.push(m);
  }
  // Keep none that turned out unneeded (a later, larger victim made room for the earlier ones).
  for (const m of [...chosen].reverse()) {
    const rest = chosen.filter((c) => c !== m);
    if (fitsWithout(rest)) chosen.splice(chosen.indexOf(m), 1);
  }
  return chosen;
}
