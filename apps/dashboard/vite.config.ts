import { defineConfig } from 'vite';

/**
 * The dashboard builds to static files the coordinator serves at `/`: every script, style and
 * font comes from the coordinator (works offline, no CDN). Asset names carry a content hash, so
 * the coordinator caches them for good.
 */
export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: true,
    // No inline <script> for the preload polyfill: modern browsers do not need it.
    modulePreload: { polyfill: false },
  },
});
