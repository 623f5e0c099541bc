import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';

/** `apps/dashboard/dist`, from `apps/coordinator/{src,dist}/routes/dashboard/`. */
export const DASHBOARD_DIST = fileURLToPath(
  new URL('../../../../dashboard/dist/', import.meta.url),
);

export interface DashboardOptions {
  /** The built dashboard (default {@link DASHBOARD_DIST}). */
  root?: string;
}

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Archipelago</title>
<meta name="color-scheme" content="light dark"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
<h1>Archipelago coordinator</h1>
<p>The dashboard is not built. Run <code>npm run build</code> in the repository (it builds
<code>apps/dashboard</code> into <code>apps/dashboard/dist</code>) and reload.</p>
<p>The API is up: <a href="/docs">/docs</a>, <a href="/healthz">/healthz</a>.</p>
</body></html>
`;

/**
 * The dashboard at `/`: the static files Vite built (no CDN, everything from here). File names
 * under `assets/` carry a content hash, so they are cached for good; `index.html` is always
 * revalidated so a new build shows up on the next load.
 */
const routes: FastifyPluginAsync<DashboardOptions> = async (app, options) => {
  const root = path.resolve(options.root ?? DASHBOARD_DIST);
  if (!existsSync(path.join(root, 'index.html'))) {
    app.log.warn({ root }, 'dashboard not built; serving a placeholder at /');
    app.get('/', { schema: { hide: true } }, async (_request, reply) =>
      reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(NOT_BUILT),
    );
    return;
  }
  await app.register(fastifyStatic, {
    root,
    prefix: '/',
    index: 'index.html',
    decorateReply: false,
    cacheControl: false,
    schemaHide: true,
    setHeaders(res, file) {
      const hashed = path.relative(root, file).startsWith(`assets${path.sep}`);
      res.header('cache-control', hashed ? 'public, max-age=31536000, immutable' : 'no-cache');
    },
  });
};

export default routes;
