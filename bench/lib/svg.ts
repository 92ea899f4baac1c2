// The latency plot, written by hand as SVG: one panel per distribution, latency by percentile
// (HdrHistogram style: the percentile axis stretches the tail, 50 / 90 / 99 / 99.9 %, and the
// latency axis is logarithmic), one curve per path.
import type { PathName } from './figures.js';
import { percentileSorted } from './stats.js';

/** One distribution as drawn: latency (ms) at percentiles q (0..100) spaced on the tail axis. */
export interface Curve {
  readonly n: number;
  readonly points: readonly (readonly [q: number, v: number])[];
}

export interface Panel {
  readonly title: string;
  readonly curves: Partial<Record<PathName, Curve>>;
}

const COLORS: Record<PathName, string> = { direct: '#1b9e77', nginx: '#7570b3', sglangmux: '#d95f02' };
const DASH: Record<PathName, string> = { direct: '', nginx: '6 3', sglangmux: '' };
const LABEL: Record<PathName, string> = { direct: 'direct', nginx: 'nginx', sglangmux: 'sglangmux' };

const W = 520;
const H = 330;
const M = { left: 62, right: 16, top: 34, bottom: 50 };
const TAIL = [0, 50, 90, 99, 99.9];

/** Position of percentile q (0..100) on the tail axis: 0 at 0 %, 1 at 90 %, 2 at 99 %, 3 at 99.9 %. */
const tail = (q: number): number => -Math.log10(1 - Math.min(q, 99.9) / 100);

function niceLogTicks(lo: number, hi: number): number[] {
  const ticks = (mantissas: readonly number[]): number[] => {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(lo)) - 1; e <= Math.ceil(Math.log10(hi)); e++) {
      for (const m of mantissas) {
        const v = m * 10 ** e;
        if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
      }
    }
    return out;
  };
  const out = ticks([1, 1.5, 2, 3, 5, 7]);
  if (out.length > 9) return out.filter((v) => /^(1|2|5)/.test(v.toPrecision(1)));
  if (out.length < 4) return ticks([1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8]);
  return out;
}

const fmt = (v: number): string => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(0) : v >= 1 ? String(+v.toFixed(1)) : String(+v.toFixed(2)));
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The points drawn for one sample: 161 percentiles evenly spaced on the tail axis, up to 99.9 %
 * (or the highest percentile the sample size supports). Kept in results.json for --replot. */
export function curveOf(values: readonly number[]): Curve | null {
  if (values.length === 0) return null;
  const sorted = Float64Array.from(values).sort();
  const maxQ = Math.min(99.9, 100 * (1 - 1 / sorted.length));
  const points: [number, number][] = [];
  const steps = 160;
  for (let i = 0; i <= steps; i++) {
    const q = 100 * (1 - 10 ** (-(tail(maxQ) * i) / steps));
    points.push([+q.toFixed(4), +percentileSorted(sorted, q).toPrecision(5)]);
  }
  return { n: sorted.length, points };
}

function panel(p: Panel, ox: number, oy: number): string {
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const curves: { path: PathName; pts: { q: number; v: number }[] }[] = [];
  for (const path of Object.keys(p.curves) as PathName[]) {
    const c = p.curves[path];
    if (!c || c.points.length === 0) continue;
    curves.push({ path, pts: c.points.map(([q, v]) => ({ q, v })) });
  }
  // The axis starts at the lowest 2nd percentile of the curves, so that a few zero or tiny values
  // (events that arrived in the same read: delay 0) do not squash the rest; anything below is drawn
  // on the bottom edge.
  const floorAt = (c: { pts: { q: number; v: number }[] }): number => c.pts.find((pt) => pt.q >= 2)?.v ?? c.pts[0]!.v;
  let lo = Math.min(...curves.map(floorAt).filter((v) => v > 1e-3));
  let hi = Math.max(...curves.flatMap((c) => c.pts.map((pt) => pt.v)));
  if (!Number.isFinite(lo)) {
    lo = 1;
    hi = 10;
  }
  if (hi / lo < 1.5) {
    lo /= 1.2;
    hi *= 1.2;
  }
  lo /= 1.05;
  hi *= 1.05;
  const x = (q: number): number => ox + M.left + (tail(q) / 3) * pw;
  const y = (v: number): number => oy + M.top + ph - ((Math.log(Math.max(v, lo)) - Math.log(lo)) / (Math.log(hi) - Math.log(lo))) * ph;
  const parts: string[] = [];
  parts.push(`<text x="${ox + M.left}" y="${oy + 20}" font-size="14" font-weight="bold">${esc(p.title)}</text>`);
  parts.push(`<rect x="${ox + M.left}" y="${oy + M.top}" width="${pw}" height="${ph}" fill="#fafafa" stroke="#999"/>`);
  for (const q of TAIL) {
    const xx = x(q).toFixed(1);
    parts.push(`<line x1="${xx}" y1="${oy + M.top}" x2="${xx}" y2="${oy + M.top + ph}" stroke="#ddd"/>`);
    parts.push(`<text x="${xx}" y="${oy + M.top + ph + 16}" font-size="11" text-anchor="middle">${q}%</text>`);
  }
  parts.push(`<text x="${ox + M.left + pw / 2}" y="${oy + H - 10}" font-size="11" text-anchor="middle">percentile</text>`);
  for (const v of niceLogTicks(lo, hi)) {
    const yy = y(v).toFixed(1);
    parts.push(`<line x1="${ox + M.left}" y1="${yy}" x2="${ox + M.left + pw}" y2="${yy}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${ox + M.left - 6}" y="${(+yy + 4).toFixed(1)}" font-size="11" text-anchor="end">${fmt(v)}</text>`);
  }
  const cy = oy + M.top + ph / 2;
  parts.push(`<text x="${ox + 14}" y="${cy}" font-size="11" text-anchor="middle" transform="rotate(-90 ${ox + 14} ${cy})">ms (log scale)</text>`);
  for (const c of curves) {
    const d = c.pts.map((pt, i) => `${i === 0 ? 'M' : 'L'}${x(pt.q).toFixed(1)},${y(pt.v).toFixed(1)}`).join(' ');
    const dash = DASH[c.path] ? ` stroke-dasharray="${DASH[c.path]}"` : '';
    parts.push(`<path d="${d}" fill="none" stroke="${COLORS[c.path]}" stroke-width="2"${dash}/>`);
  }
  // legend, top left inside the plot
  curves.forEach((c, i) => {
    const lx = ox + M.left + 10;
    const ly = oy + M.top + 16 + i * 16;
    const dash = DASH[c.path] ? ` stroke-dasharray="${DASH[c.path]}"` : '';
    parts.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 22}" y2="${ly - 4}" stroke="${COLORS[c.path]}" stroke-width="2"${dash}/>`);
    const n = p.curves[c.path]!.n;
    parts.push(`<text x="${lx + 28}" y="${ly}" font-size="11">${LABEL[c.path]} (n=${n})</text>`);
  });
  return parts.join('\n');
}

/** Panels in a grid of two columns. */
export function latencySvg(title: string, subtitle: string, panels: readonly Panel[]): string {
  const cols = 2;
  const rows = Math.ceil(panels.length / cols);
  const top = 48;
  const width = cols * W;
  const height = top + rows * H;
  const body = panels.map((p, i) => panel(p, (i % cols) * W, top + Math.floor(i / cols) * H)).join('\n');
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${width / 2}" y="20" font-size="16" font-weight="bold" text-anchor="middle">${esc(title)}</text>
<text x="${width / 2}" y="38" font-size="11" text-anchor="middle" fill="#444">${esc(subtitle)}</text>
${body}
</svg>
`;
}
