// Every number a run produces is a Figure: a median with its min–max spread, a unit, and the
// issue's target where there is one (printed against it, never a pass/fail).
import { spread, type Spread } from './stats.js';

export type PathName = 'direct' | 'nginx' | 'sglangmux';
export const PATHS: readonly PathName[] = ['direct', 'nginx', 'sglangmux'];

export interface Target {
  readonly op: '<=' | '>=' | '==';
  readonly value: number;
  /** Which statistic of the spread is compared: the median over repetitions, or the worst one. */
  readonly on: 'median' | 'max' | 'min';
}

export interface Figure {
  readonly id: string;
  readonly label: string;
  readonly unit: string;
  readonly value: Spread;
  readonly target?: Target;
  /** What the spread is over (default: repetitions). */
  readonly over?: string;
}

export function meets(f: Figure): boolean | null {
  if (!f.target) return null;
  const v = f.value[f.target.on];
  if (!Number.isFinite(v)) return false;
  switch (f.target.op) {
    case '<=':
      return v <= f.target.value;
    case '>=':
      return v >= f.target.value;
    case '==':
      return v === f.target.value;
  }
}

export class Figures {
  readonly list: Figure[] = [];

  add(id: string, label: string, unit: string, values: readonly number[], target?: Target, over?: string): Figure {
    const f: Figure = { id, label, unit, value: spread(values), ...(target ? { target } : {}), ...(over ? { over } : {}) };
    this.list.push(f);
    return f;
  }

  get(id: string): Figure | undefined {
    return this.list.find((f) => f.id === id);
  }
}

/** Figure ids every run must produce (the smoke test checks them). */
export function expectedFigureIds(): string[] {
  const ids: string[] = [];
  for (const c of ['c1', 'cN']) {
    for (const stat of ['p50', 'p99', 'rps']) {
      for (const p of PATHS) ids.push(`ns.${c}.${stat}.${p}`);
      ids.push(`ns.${c}.${stat}.mux_vs_direct`, `ns.${c}.${stat}.mux_vs_nginx`, `ns.${c}.${stat}.nginx_vs_direct`);
      if (stat !== 'rps') ids.push(`ns.${c}.${stat}.mux_ratio_direct`, `ns.${c}.${stat}.mux_ratio_nginx`);
    }
    ids.push(`ns.${c}.errors`, `ns.${c}.cpu_per_req.sglangmux`, `ns.${c}.cpu_per_req.nginx`, `ns.${c}.cpu_per_req.simulator`,
      `ns.${c}.cpu_per_req.mux_ratio_nginx`);
  }
  ids.push('ns.cN.cpu.sglangmux', 'ns.cN.cpu.nginx', 'ns.cN.cpu.simulator', 'ns.cN.cpu.generator', 'ns.cN.cpu.machine');
  for (const stat of ['ttfb.p50', 'ttfb.p99', 'gap.p50', 'gap.p99']) {
    for (const p of PATHS) ids.push(`st.${stat}.${p}`);
    ids.push(`st.${stat}.mux_vs_direct`, `st.${stat}.mux_vs_nginx`, `st.${stat}.nginx_vs_direct`,
      `st.${stat}.mux_ratio_direct`, `st.${stat}.mux_ratio_nginx`);
  }
  for (const p of PATHS) ids.push(`st.events.${p}`, `st.shared.${p}`, `st.loop_p99.${p}`);
  ids.push('st.errors', 'st.cpu.sglangmux', 'st.cpu.nginx', 'st.cpu.simulator', 'st.cpu.generator', 'st.cpu.machine',
    'st.rss.sglangmux', 'st.rss_after.sglangmux', 'st.cpu_per_event.sglangmux', 'st.cpu_per_event.nginx',
    'st.cpu_per_event.simulator', 'st.cpu_per_event.mux_ratio_nginx', 'st.capacity.sglangmux', 'st.capacity.nginx');
  ids.push('sw.switch_ms', 'sw.overhead.median', 'sw.overhead.max', 'sw.daemon_gaps.median', 'sw.gap.before_release',
    'sw.gap.release_to_resume', 'sw.gap.resume_to_forward', 'sw.sim.release_extra', 'sw.sim.resume_extra', 'sw.noticed_wake.median',
    'sw.noticed_wake.max', 'sw.errors', 'sw.smi.switch_ms', 'sw.smi.overhead.median', 'sw.smi.overhead.max', 'sw.smi.call_ms',
    'sw.smi.errors');
  ids.push('su.listen.median', 'su.listen.max', 'su.idle_rss', 'su.noticed_ready.median', 'su.noticed_ready.max');
  return ids;
}
