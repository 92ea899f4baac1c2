// JSON answers go to Koa as text. Given an object, Koa's body setter and its respond() test it
// against the fetch API's classes (ReadableStream, Blob, Response) before they stringify it, and
// the first touch of `Response` makes Node load its whole fetch implementation (undici): about
// 20 ms on the daemon's first answer, its first /health, and 9 MB of resident memory for good,
// for a class the daemon never uses. The text is what Koa would have sent.
import type Koa from 'koa';

export function respondJson(ctx: Koa.Context, value: unknown): void {
  ctx.type = 'json';
  ctx.body = JSON.stringify(value);
}
