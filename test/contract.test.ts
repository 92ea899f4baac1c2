// The contract with SGLang itself: every route, body field, answer field and launch flag that
// sglangmux uses (the one table in src/sglang-api.ts) is looked up, statically, in the source of
// a pinned SGLang release (downloaded without dependencies by scripts/install-test-deps.sh). A
// SGLang that renames or drops one of them fails here instead of on a user's GPU host.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { SGLANG_ANSWER_FIELDS, SGLANG_FLAG_ABBREVIATIONS, SGLANG_FLAGS, SGLANG_ROUTES } from '../src/sglang-api.js';
import { testTool } from './support/tools.js';

const SGLANG_VERSION = '0.5.23'; // as pinned in scripts/install-test-deps.sh

/** Every .py file below `dir` (none when it does not exist: older releases lack some folders). */
function pyFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? pyFiles(p) : f.endsWith('.py') ? [p] : [];
  });
}

/** SGLang's `srt` package, or null (test skipped outside CI) when not downloaded. */
function srt(t: TestContext): string | null {
  const root = testTool(t, `sglang-${SGLANG_VERSION}/sglang`);
  return root === null ? null : join(root, 'srt');
}

interface Endpoint {
  readonly methods: string[];
  /** The decorators and function that follow the route's decorator, up to the next one. */
  readonly source: string;
}

/** Every route declared with @app/@router .get/.post/.api_route in the entrypoints. */
function endpoints(srtDir: string): Map<string, Endpoint[]> {
  const out = new Map<string, Endpoint[]>();
  for (const file of pyFiles(join(srtDir, 'entrypoints'))) {
    const text = readFileSync(file, 'utf8');
    const re = /^@(?:app|router)\.(get|post|put|delete|api_route)\(\s*"([^"]+)"([^)]*)\)/gm;
    const found = [...text.matchAll(re)];
    found.forEach((m, i) => {
      const kind = m[1]!;
      const methods = kind === 'api_route'
        ? [...(/methods\s*=\s*\[([^\]]*)\]/.exec(m[3] ?? '')?.[1] ?? '').matchAll(/"(\w+)"/g)].map((x) => x[1]!)
        : [kind.toUpperCase()];
      const end = found[i + 1]?.index ?? text.length;
      const list = out.get(m[2]!) ?? [];
      list.push({ methods, source: text.slice(m.index, end) });
      out.set(m[2]!, list);
    });
  }
  return out;
}

/** The annotated fields of a Python class (`name: type` lines at its first indentation). */
function classFields(srtDir: string, className: string): Set<string> | null {
  for (const file of pyFiles(srtDir)) {
    const text = readFileSync(file, 'utf8');
    const at = text.search(new RegExp(`^class ${className}\\b`, 'm'));
    if (at < 0) continue;
    const body = text.slice(at).split('\n').slice(1);
    const fields = new Set<string>();
    for (const line of body) {
      if (/^\S/.test(line)) break; // the class ended
      const m = /^ {4}([a-z_][a-z0-9_]*)\s*:/.exec(line);
      if (m) fields.add(m[1]!);
    }
    return fields;
  }
  return null;
}

/** Fields of the server arguments: declared on ServerArgs or its field groups (arg_groups). */
function serverArgFields(srtDir: string): Set<string> {
  const files = [join(srtDir, 'server_args.py'), ...pyFiles(join(srtDir, 'arg_groups'))];
  const fields = new Set<string>();
  for (const f of files) for (const m of readFileSync(f, 'utf8').matchAll(/^ {4}([a-z_][a-z0-9_]*)\s*:/gm)) fields.add(m[1]!);
  return fields;
}

/** Flag spellings written out literally (argparse add_argument, or aliases=[...]). */
function literalFlags(srtDir: string): string {
  return [join(srtDir, 'server_args.py'), ...pyFiles(join(srtDir, 'arg_groups'))]
    .map((f) => readFileSync(f, 'utf8')).join('\n');
}

/** The flag spellings (from fields and written out) that begin with `prefix`: argparse takes a
 * prefix as an abbreviation only when it begins exactly one. */
function flagsBeginning(srtDir: string, prefix: string): string[] {
  const spellings = new Set([...serverArgFields(srtDir)].map((f) => `--${f.replace(/_/g, '-')}`));
  for (const m of literalFlags(srtDir).matchAll(/"(--[a-z0-9][a-z0-9-]*)/g)) spellings.add(m[1]!);
  return [...spellings].filter((f) => f.startsWith(prefix)).sort();
}

describe(`contract with SGLang ${SGLANG_VERSION}`, () => {
  test('every route sglangmux calls exists with that method and auth level, and takes the fields sent', (t) => {
    const dir = srt(t);
    if (dir === null) return;
    const all = endpoints(dir);
    for (const [name, r] of Object.entries(SGLANG_ROUTES)) {
      const eps = all.get(r.path);
      assert.ok(eps, `${name}: SGLang has no route ${r.path}`);
      const ep = eps.find((e) => e.methods.includes(r.method));
      assert.ok(ep, `${name}: ${r.path} does not take ${r.method} (only ${eps.flatMap((e) => e.methods).join(', ')})`);
      const admin = /AuthLevel\.ADMIN_(OPTIONAL|FORCE)/.test(ep.source);
      assert.equal(admin, r.admin, `${name}: ${r.path} is ${admin ? '' : 'not '}admin-level in SGLang`);
      const body = 'body' in r ? r.body : undefined;
      if (body) {
        assert.match(ep.source, new RegExp(`\\b${body.type}\\b`), `${name}: ${r.path} no longer takes ${body.type}`);
        const fields = classFields(dir, body.type);
        assert.ok(fields, `${name}: no class ${body.type}`);
        for (const f of body.fields) assert.ok(fields.has(f), `${name}: ${body.type} has no field ${f}`);
      }
      const query: readonly string[] = ('query' in r ? r.query : undefined) ?? [];
      for (const q of query) assert.match(ep.source, new RegExp(`\\b${q}\\s*:`), `${name}: ${r.path} has no query parameter ${q}`);
    }
  });

  test('every answer field sglangmux reads is defined there', (t) => {
    const dir = srt(t);
    if (dir === null) return;
    const all = endpoints(dir);
    const modelInfo = all.get(SGLANG_ROUTES.modelInfo.path)?.[0]?.source ?? '';
    for (const f of SGLANG_ANSWER_FIELDS.modelInfo.fields) assert.match(modelInfo, new RegExp(`"${f}"`), `/model_info answers no ${f}`);
    const load = classFields(dir, SGLANG_ANSWER_FIELDS.load.type);
    assert.ok(load, `no class ${SGLANG_ANSWER_FIELDS.load.type}`);
    for (const f of SGLANG_ANSWER_FIELDS.load.fields) assert.ok(load.has(f), `${SGLANG_ANSWER_FIELDS.load.type} has no field ${f}`);
    const args = serverArgFields(dir);
    for (const f of SGLANG_ANSWER_FIELDS.serverInfo.fields) assert.ok(args.has(f), `the server arguments (/server_info) have no ${f}`);
  });

  test('every launch flag sglangmux reads from a script exists in server_args', (t) => {
    const dir = srt(t);
    if (dir === null) return;
    const fields = serverArgFields(dir);
    const literal = literalFlags(dir);
    for (const [name, flags] of Object.entries(SGLANG_FLAGS)) {
      for (const flag of flags) {
        if (SGLANG_FLAG_ABBREVIATIONS.has(flag)) continue;
        const field = flag.slice(2).replace(/-/g, '_');
        assert.ok(fields.has(field) || literal.includes(`"${flag}"`), `${name}: SGLang has no launch flag ${flag}`);
      }
    }
  });

  test('every abbreviated flag sglangmux reads still begins exactly the one flag it stands for', (t) => {
    const dir = srt(t);
    if (dir === null) return;
    for (const [short, full] of SGLANG_FLAG_ABBREVIATIONS) {
      assert.ok(Object.values(SGLANG_FLAGS).some((flags) => (flags as readonly string[]).includes(full)), `${short}: ${full} is not read`);
      assert.deepEqual(flagsBeginning(dir, short), [full], `${short} no longer abbreviates ${full} alone`);
    }
  });

  test('the check itself fails on a route, field or flag SGLang does not have', (t) => {
    const dir = srt(t);
    if (dir === null) return;
    assert.equal(endpoints(dir).get('/release_memory_occupation_v2'), undefined);
    assert.equal(classFields(dir, 'UpdateWeightFromDiskReqInput')?.has('model_paths'), false);
    assert.equal(serverArgFields(dir).has('enable_memory_saverz'), false);
    assert.ok(flagsBeginning(dir, '--enable-').length > 1);
  });
});
