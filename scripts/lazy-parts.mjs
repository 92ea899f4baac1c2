// Packages the daemon imports only when first needed (`await import('got')`) go into its one
// file commented out, and cost its start nothing.
//
// Bundled as code, a package imported late still costs every start: V8 parses all of it, and
// esbuild hoists its ESM imports of Node built-ins (got's tls, https, http2, zlib …) to the top
// of the file, where they load before anything runs. So each such package is bundled on its own,
// as CommonJS (its built-ins become require() calls, made when it runs), and put into the
// daemon's file line by line, each line commented out, in the body of a function that is never
// called: V8 skips a comment at the cost of finding its line's end, where a string or template
// literal of the same text costs it about as much as the code. At the first import, that
// function's source text (Function.prototype.toString keeps comments) gives the code back, and
// node:vm compiles it. esbuild drops comments, so the lines go in after the build (`commentIn`),
// where a marker stands, and the round trip is checked there.
import { readFileSync, writeFileSync } from 'node:fs';
import { build } from 'esbuild';

const NAMESPACE = 'commented-out';

/** From the function's source text, its commented-out lines without their `//`. */
const uncomment = (source) => source.slice(source.indexOf('\n//') + 3, source.lastIndexOf('\n')).replaceAll('\n//', '\n');

const functionName = (pkg) => `${pkg.replace(/\W/g, '_')}CommentedOut`;
const marker = (pkg) => `sglangmux: ${pkg} commented out here`;

/**
 * Builds each package (`{ name, imports }`: the names the daemon imports from it, `default`
 * among them if so) as CommonJS. `shared` are packages the daemon also bundles as code: a lazy part requires them from
 * there, one instance each (mime-db: a 230 KB table, parsed into objects).
 */
export async function lazyParts(options, packages, shared) {
  const parts = [];
  for (const { name, imports } of packages) {
    const { outputFiles, metafile } = await build({
      ...options,
      banner: {},
      alias: {},
      external: shared,
      format: 'cjs',
      stdin: { contents: `export { ${imports.join(', ')} } from '${name}';`, resolveDir: '.', loader: 'js' },
      write: false,
      metafile: true,
    });
    const code = outputFiles[0].text.replace(/\n$/, '');
    if (/[\r\u2028\u2029]/.test(code)) throw new Error(`${name}: a line break other than \\n cannot be commented out`);
    parts.push({ name, imports, code, inputs: Object.keys(metafile.inputs) });
  }
  const byName = new Map(parts.map((p) => [p.name, p]));
  const escapeRe = (name) => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const theirNames = new RegExp(`^(${parts.map((p) => escapeRe(p.name)).join('|')})$`);
  const sharedImports = shared.map((s, i) => `import shared${i} from '${s}';`).join('\n');
  const sharedMap = shared.map((s, i) => `'${s}': shared${i}`).join(', ');
  const reexports = (imports) => [
    ...(imports.includes('default') ? ['export default module.exports.default;'] : []),
    ...imports.filter((i) => i !== 'default').map((i) => `export const ${i} = module.exports.${i};`),
  ].join('\n');

  /** The esbuild plugin: an import of one of the packages gets the module that compiles its lines. */
  const plugin = {
    name: NAMESPACE,
    setup(b) {
      b.onResolve({ filter: theirNames }, (args) => (args.namespace !== NAMESPACE
        ? { path: args.path, namespace: NAMESPACE }
        : undefined));
      b.onLoad({ filter: /.*/, namespace: NAMESPACE }, (args) => ({
        loader: 'js',
        resolveDir: '.',
        // Strict, as all of the bundle is (an ES module); require() gives the shared packages
        // and Node's built-ins, and refuses anything else: it was meant to be bundled.
        contents: `
          import { createRequire, isBuiltin } from 'node:module';
          import { compileFunction } from 'node:vm';
          ${sharedImports}
          function ${functionName(args.path)}() {
            return ${JSON.stringify(marker(args.path))};
          }
          const shared = { ${sharedMap} };
          const builtin = createRequire(import.meta.url);
          const require = (id) => {
            if (Object.hasOwn(shared, id)) return shared[id];
            if (isBuiltin(id)) return builtin(id);
            throw new Error('${args.path} (commented out in sglangmux.mjs) requires ' + id + ', which is not in the bundle');
          };
          const module = { exports: {} };
          compileFunction('"use strict";' + (${uncomment})(${functionName(args.path)}.toString()), ['module', 'exports', 'require'],
            { filename: '${args.path} (commented out in sglangmux.mjs)' })
            (module, module.exports, require);
          ${reexports(byName.get(args.path).imports)}`,
      }));
    },
  };

  /** Puts each package's lines where its marker stands. */
  function commentIn(file) {
    let text = readFileSync(file, 'utf8');
    for (const { name, code } of parts) {
      const at = new RegExp(`^ *return ${JSON.stringify(marker(name))};$`, 'm');
      if (!at.test(text)) throw new Error(`${file}: the marker for ${name}'s lines is missing`);
      text = text.replace(at, () => code.split('\n').map((l) => `//${l}`).join('\n'));
    }
    writeFileSync(file, text);
  }

  /** Checks, on the file as written at last, that each package's lines come back whole
   * (`rewrite`: what the build did to the whole file after commentIn). */
  function check(file, rewrite) {
    const text = readFileSync(file, 'utf8');
    for (const { name, code } of parts) {
      const lines = text.slice(text.indexOf(`function ${functionName(name)}()`)).split('\n', code.split('\n').length + 2);
      if (uncomment(lines.join('\n')) !== rewrite(code)) throw new Error(`${file}: ${name}'s lines do not come back whole`);
    }
  }

  return { plugin, commentIn, check, inputs: parts.flatMap((p) => p.inputs) };
}
