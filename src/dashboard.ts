// The dashboard at /ui: one page, its script and its style sheet, embedded in the bundle at build
// time (scripts/build.mjs), so it needs nothing from the network. The page gets its data from
// the control API (/admin/models, /admin/events, the log route) with the admin key, if any.
import type Router from '@koa/router';
import type Koa from 'koa';
import page from './ui/index.html';
import style from './ui/app.css';
import script from './ui/app.ts?browser';

/** The page loads nothing from elsewhere and may not be framed (its buttons change things). */
const HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src data:; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

const serve = (type: string, body: string): Koa.Middleware => (ctx) => {
  ctx.set(HEADERS);
  ctx.type = type;
  ctx.body = body;
};

/** Adds the dashboard's routes; `guard` decides who may load them. */
export function addDashboardRoutes(router: Router, guard: Koa.Middleware): void {
  router.get(['/ui', '/ui/'], guard, serve('text/html; charset=utf-8', page));
  router.get('/ui/app.js', guard, serve('text/javascript; charset=utf-8', script));
  router.get('/ui/app.css', guard, serve('text/css; charset=utf-8', style));
}
