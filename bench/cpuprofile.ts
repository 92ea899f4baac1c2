// Summarizes a V8 .cpuprofile (from `node --cpu-prof`, e.g. written by `bench/run.ts
// --cpu-prof-dir DIR`): self time per function and per package, and inclusive time of the
// heaviest functions. Usage: node --import tsx bench/cpuprofile.ts FILE.cpuprofile [TOP]
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const file = process.argv[2];
const top = Number(process.argv[3] ?? 25);
if (!file) {
  process.stderr.write('usage: node --import tsx bench/cpuprofile.ts FILE.cpuprofile [TOP]\n');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Self time per node, in ms: each sample's delta goes to the node it was taken in.
const self = new Map<number, number>();
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000));
const total = [...self.values()].reduce((a, b) => a + b, 0);

const where = (f: CallFrame): string => {
  const url = f.url.replace(/^file:\/\//, '');
  const nm = url.lastIndexOf('node_modules/');
  const short = nm >= 0 ? url.slice(nm + 'node_modules/'.length) : url.split('/').slice(-2).join('/');
  return short ? `${short}:${f.lineNumber + 1}` : '';
};
const key = (f: CallFrame): string => `${f.functionName || '(anonymous)'} ${where(f)}`.trim();

/** The bundle inlines its dependencies; esbuild keeps a "// node_modules/<pkg>/…" comment above
 * each module, so the bundle's source tells which package a line belongs to. */
const bundleModules = new Map<string, { line: number; module: string }[]>();
function moduleOf(f: CallFrame): string {
  if (f.url === '') return f.functionName.startsWith('(') ? f.functionName : '(native)';
  if (f.url.startsWith('node:')) return 'node internals';
  const path = f.url.replace(/^file:\/\//, '');
  if (!bundleModules.has(path)) {
    const marks: { line: number; module: string }[] = [];
    try {
      readFileSync(path, 'utf8').split('\n').forEach((text, line) => {
        if (!text.startsWith('// ')) return;
        const pkg = /node_modules\/((?:@[^/]+\/)?[^/\s]+)/.exec(text);
        const src = /(?:^\/\/ |\/)(src\/\S+)$/.exec(text);
        if (pkg) marks.push({ line, module: pkg[1]! });
        else if (src) marks.push({ line, module: src[1]! });
      });
    } catch {
      // not readable
    }
    bundleModules.set(path, marks);
  }
  const marks = bundleModules.get(path)!;
  let found = path.split('/').slice(-1)[0]!;
  for (const m of marks) {
    if (m.line > f.lineNumber) break;
    found = m.module;
  }
  return found;
}

const selfByFn = new Map<string, number>();
const selfByModule = new Map<string, number>();
for (const [id, ms] of self) {
  const f = byId.get(id)!.callFrame;
  selfByFn.set(key(f), (selfByFn.get(key(f)) ?? 0) + ms);
  const mod = moduleOf(f);
  selfByModule.set(mod, (selfByModule.get(mod) ?? 0) + ms);
}

// Inclusive time per function: a sample counts once for every distinct function on its stack.
const inclusive = new Map<string, number>();
profile.samples.forEach((id, i) => {
  const seen = new Set<string>();
  for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
    const k = key(byId.get(n)!.callFrame);
    if (seen.has(k)) continue;
    seen.add(k);
    inclusive.set(k, (inclusive.get(k) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  }
});

// Time by package including what it called in Node itself: each sample goes to the leaf-most
// frame that belongs to a package or a source file of the bundle (so a socket write that got
// started counts for got, one that the response started counts for koa).
const byOwner = new Map<string, number>();
profile.samples.forEach((id, i) => {
  let owner = '';
  for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
    const f = byId.get(n)!.callFrame;
    if (f.url === '' && f.functionName.startsWith('(')) {
      owner = f.functionName;
      break;
    }
    if (f.url === '' || f.url.startsWith('node:')) continue;
    owner = moduleOf(f);
    break;
  }
  owner ||= 'node internals (no package on the stack)';
  byOwner.set(owner, (byOwner.get(owner) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
});

const pct = (ms: number): string => `${((100 * ms) / total).toFixed(1).padStart(5)} %`;
const print = (title: string, m: Map<string, number>, n: number): void => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, ms] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) {
    process.stdout.write(`${pct(ms)} ${ms.toFixed(0).padStart(7)} ms  ${k}\n`);
  }
};
process.stdout.write(`${file}: ${(total / 1000).toFixed(2)} s sampled over ${((profile.endTime - profile.startTime) / 1e6).toFixed(2)} s\n`);
print('self time by package / module', selfByModule, top);
print('time by package / module, including the Node internals it called', byOwner, top);
print('self time by function', selfByFn, top);
print('inclusive time by function', inclusive, top);
