// Bundles the daemon and the SGLang simulator into single ESM files under dist/.
// Plain (not minified) so a user can read what runs on their machine.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { lazyParts } from './lazy-parts.mjs';
// CommonJS dependencies (koa, yargs) call require() for Node built-ins; an ESM bundle needs a real require.
const banner = {
  js: "import { createRequire as __sglangmuxCreateRequire } from 'node:module';\nconst require = __sglangmuxCreateRequire(import.meta.url);",
};

// koa, accepts and co-body each pin their own mime-db (a 200 KB JSON database, three copies in
// the bundle); the newest serves all three (same format, a superset), and the daemon starts
// about 30 ms sooner for parsing less.
const mimeDb = fileURLToPath(new URL('../node_modules/mime-db', import.meta.url));

const common = {
  bundle: true,
  alias: { 'mime-db': mimeDb },
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minify: false,
  legalComments: 'none',
  banner,
  logLevel: 'warning',
};

// The dashboard's files (src/ui/) go into the daemon's bundle as text: its page and style sheet
// as they are, its script (imported as `./app.ts?browser`) first bundled for the browser.
const browserScripts = {
  name: 'browser-scripts',
  setup(b) {
    b.onResolve({ filter: /\?browser$/ }, (args) => ({
      path: join(args.resolveDir, args.path.slice(0, -'?browser'.length)),
      namespace: 'browser',
    }));
    b.onLoad({ filter: /.*/, namespace: 'browser' }, async (args) => {
      const { outputFiles, metafile } = await build({
        entryPoints: [args.path],
        bundle: true,
        write: false,
        metafile: true,
        platform: 'browser',
        format: 'iife',
        target: ['chrome110', 'firefox110', 'safari16'],
        minify: false,
        legalComments: 'none',
        logLevel: 'warning',
      });
      return { contents: outputFiles[0].text, loader: 'text', watchFiles: Object.keys(metafile.inputs) };
    });
  },
};
// esbuild escapes non-ASCII characters in code but leaves dependencies' comments as they are.
// One such character makes V8 hold the whole bundle's source as a two-byte string: 3 MB more
// resident memory for the daemon's life. Escaped, a character in a comment is still readable,
// and the escape means the same character anywhere else.
const escapeNonAscii = (text) => text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
function asciiOnly(file) {
  const text = readFileSync(file, 'utf8');
  const escaped = escapeNonAscii(text);
  if (escaped !== text) writeFileSync(file, escaped);
}

// koa-body (with zod, formidable, iconv-lite: half of the daemon's code) serves requests with a
// body, got the calls to model servers; the daemon imports both when first needed, and neither
// costs its start anything (scripts/lazy-parts.mjs says how).
const lazy = await lazyParts(common, [
  { name: 'koa-body', imports: ['koaBody'] },
  { name: 'got', imports: ['default'] },
], ['mime-db']);

const daemon = { ...common, loader: { '.html': 'text', '.css': 'text' }, plugins: [browserScripts, lazy.plugin] };

await build({
  ...daemon,
  entryPoints: ['src/main.ts'],
  outfile: 'dist/sglangmux.mjs',
  banner: { js: `#!/usr/bin/env node\n${banner.js}` },
});
lazy.commentIn('dist/sglangmux.mjs');
asciiOnly('dist/sglangmux.mjs');
lazy.check('dist/sglangmux.mjs', escapeNonAscii);

await build({
  ...common,
  entryPoints: ['src/simulator/main.ts'],
  outfile: 'dist/sglang-sim.mjs',
});

await build({
  ...common,
  entryPoints: ['src/simulator/nvidia-smi.ts'],
  outfile: 'dist/sim-nvidia-smi.mjs',
});

// Third-party licences of what the daemon bundle contains, written beside it as
// dist/THIRD_PARTY_LICENSES.txt (the Python wheel ships both). A second pass over the daemon's
// entry point, not written to disk, gives esbuild's metafile: exactly the files in the bundle.
{
  const { metafile } = await build({
    ...daemon,
    entryPoints: ['src/main.ts'],
    outfile: 'dist/sglangmux.mjs',
    write: false,
    metafile: true,
  });
  const packageDirs = new Set();
  for (const input of [...Object.keys(metafile.inputs), ...lazy.inputs]) {
    const parts = input.split('/');
    const at = parts.lastIndexOf('node_modules');
    if (at < 0) continue;
    const width = parts[at + 1]?.startsWith('@') ? 2 : 1;
    packageDirs.add(parts.slice(0, at + 1 + width).join('/'));
  }
  const licenceOf = (pkg) => {
    if (typeof pkg.license === 'string') return pkg.license;
    if (pkg.license?.type) return pkg.license.type;
    if (Array.isArray(pkg.licenses)) return pkg.licenses.map((l) => l.type ?? l).join(' OR ');
    return 'UNKNOWN';
  };
  const entries = new Map();
  for (const dir of packageDirs) {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    const id = `${pkg.name}@${pkg.version}`;
    if (entries.has(id)) continue;
    const files = readdirSync(dir)
      .filter((f) => /^(licen[cs]e|copying|notice)/i.test(f))
      .sort();
    const repo = typeof pkg.repository === 'string' ? pkg.repository : pkg.repository?.url;
    const head = [`${pkg.name} ${pkg.version}`, `License: ${licenceOf(pkg)}`];
    if (repo) head.push(`Repository: ${repo}`);
    const texts = files.map((f) => readFileSync(join(dir, f), 'utf8').trimEnd());
    if (texts.length === 0) {
      texts.push(`(The package ships no licence file; its package.json declares the licence ${licenceOf(pkg)}.)`);
    }
    entries.set(id, `${head.join('\n')}\n\n${texts.join('\n\n')}\n`);
  }
  const rule = '-'.repeat(79);
  const sorted = [...entries.keys()].sort().map((id) => entries.get(id));
  writeFileSync(
    'dist/THIRD_PARTY_LICENSES.txt',
    `Third-party software in sglangmux.mjs, the bundled sglangmux daemon\n\n` +
      `sglangmux.mjs contains code from the ${sorted.length} npm packages below, each under its own licence.\n` +
      sorted.map((e) => `\n${rule}\n${e}`).join(''),
  );
}
