// The dashboard's files, embedded into the daemon's bundle as text by scripts/build.mjs.
declare module '*.html' {
  const text: string;
  export default text;
}
declare module '*.css' {
  const text: string;
  export default text;
}
/** A browser script (`./x.ts?browser`): the file bundled for the browser, as text. */
declare module '*?browser' {
  const text: string;
  export default text;
}
