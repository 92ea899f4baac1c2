// Preloaded into a daemon under test (NODE_OPTIONS=--import): the first touch of the global
// `Response`, which makes Node load its fetch implementation, prints a marked line and the stack
// that touched it, then puts the real global back.
const real = Object.getOwnPropertyDescriptor(globalThis, 'Response');
Object.defineProperty(globalThis, 'Response', {
  configurable: true,
  get() {
    process.stderr.write(`FETCH-API-LOADED by\n${new Error().stack}\n`);
    Object.defineProperty(globalThis, 'Response', real);
    return globalThis.Response;
  },
});
