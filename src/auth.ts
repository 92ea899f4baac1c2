// Who may call what: the API key for inference routes, the admin key (or a loopback-only
// listener) for the control API and metrics, and CORS for browser clients. Keys are compared in
// constant time through their SHA-256 digests, so neither the contents nor the length leak, and
// they never appear in a log line or an error message.
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type Koa from 'koa';
import { controlForbidden, invalidApiKey } from './errors.js';

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** The token of an `Authorization: Bearer <token>` header, or null. */
function bearerToken(ctx: Koa.Context): string | null {
  const header = ctx.get('authorization');
  const match = /^Bearer[ \t]+(.+)$/i.exec(header.trim());
  return match ? match[1]!.trim() : null;
}

/** A middleware that lets through only requests carrying `key` as a bearer token; null lets
 * everything through. */
export function requireKey(key: string | null, which: 'API key' | 'admin API key'): Koa.Middleware {
  if (key === null) return (_ctx, next) => next();
  const want = digest(key);
  return (ctx, next) => {
    const token = bearerToken(ctx);
    if (token === null || !timingSafeEqual(digest(token), want)) {
      ctx.set('WWW-Authenticate', 'Bearer');
      throw invalidApiKey(which, token === null);
    }
    return next();
  };
}

/** True for 127.0.0.0/8, ::1, IPv4-mapped 127.x and `localhost`. */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  let a = address.trim().toLowerCase();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  if (a === 'localhost') return true;
  if (a.startsWith('::ffff:')) a = a.slice('::ffff:'.length);
  if (isIP(a) === 4) return a.startsWith('127.');
  if (isIP(a) === 6) return a === '::1' || a === '0:0:0:0:0:0:0:1';
  return false;
}

/**
 * Why a request that reached a loopback listener still comes from a web page of another site, or
 * null. A page the user has open can send simple POSTs to 127.0.0.1 (its browser is a loopback
 * client), and a host name rebound to 127.0.0.1 can even read the answers: browsers say where a
 * request comes from (Sec-Fetch-Site, Origin), and a rebound name shows in Host.
 */
function fromAnotherSite(ctx: Koa.Context): string | null {
  const fetchSite = ctx.get('sec-fetch-site');
  if (fetchSite !== '' && fetchSite !== 'same-origin' && fetchSite !== 'none') return `Sec-Fetch-Site: ${fetchSite}`;
  if (!isLoopback(ctx.hostname)) return `Host: ${ctx.host}`;
  const origin = ctx.get('origin');
  // Our own origin spelled out: Koa 3's ctx.origin is the Origin header itself.
  if (origin !== '' && origin !== `${ctx.protocol}://${ctx.host}`) return `Origin: ${origin}`;
  return null;
}

/**
 * Guards the control API (and /metrics): with an admin key, the key is required; without one,
 * only a daemon listening on a loopback address answers, only to loopback peers, and not to a web
 * page of another site.
 */
export function requireAdmin(adminKey: string | null, listenHost: string): Koa.Middleware {
  if (adminKey !== null) return requireKey(adminKey, 'admin API key');
  const loopbackListener = isLoopback(listenHost);
  return (ctx, next) => {
    if (!loopbackListener) throw controlForbidden(`sglangmux listens on ${listenHost}, not on a loopback address`);
    if (!isLoopback(ctx.req.socket.remoteAddress)) throw controlForbidden('only loopback clients may use it without an admin key');
    const site = fromAnotherSite(ctx);
    if (site !== null) throw controlForbidden(`a request from another site (${site}) may not use it without an admin key`);
    return next();
  };
}

/**
 * Guards the dashboard's page and its script: they hold no data, so with an admin key anybody may
 * load them (the page asks for the key and sends it with its calls to the control API); without
 * one, the control API's loopback rule.
 */
export function requireAdminPage(adminKey: string | null, listenHost: string): Koa.Middleware {
  return adminKey !== null ? (_ctx, next) => next() : requireAdmin(null, listenHost);
}

/** CORS for the given origins (`*` for any): headers on every answer to a matching Origin, and
 * preflight OPTIONS answered 204 before any authentication (browsers send no credentials then). */
export function cors(origins: readonly string[]): Koa.Middleware {
  const any = origins.includes('*');
  return async (ctx, next) => {
    const origin = ctx.get('origin');
    const allowed = origin !== '' && (any || origins.includes(origin));
    ctx.vary('Origin');
    if (!allowed) return next();
    ctx.set('Access-Control-Allow-Origin', any ? '*' : origin);
    if (ctx.method === 'OPTIONS' && ctx.get('access-control-request-method')) {
      ctx.set('Access-Control-Allow-Methods', 'GET, POST, OPTIONS');
      ctx.set('Access-Control-Allow-Headers', ctx.get('access-control-request-headers') || 'authorization, content-type');
      ctx.set('Access-Control-Max-Age', '600');
      ctx.status = 204;
      return;
    }
    await next();
  };
}
