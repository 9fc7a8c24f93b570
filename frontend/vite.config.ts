import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/** The Python server to proxy to during `npm run dev` (start it with `make run`). */
const backend = process.env['TRIO_BROADCAST_URL'] ?? 'http://127.0.0.1:8000';

export default defineConfig({
  // Relative asset URLs: the UI works under any path prefix (e.g. behind a proxy at /chat/).
  base: './',
  build: {
    outDir: fileURLToPath(new URL('../trio_broadcast/static/', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    reportCompressedSize: false,
  },
  server: {
    proxy: {
      '/health': backend,
      '/api': backend, // /api/status: connection count and the server's line of the sparkline
      // The Host header is passed through (no changeOrigin), so the browser's Origin still
      // matches it and the server's same-origin check accepts the proxied WebSocket.
      '/ws': { target: backend.replace(/^http/, 'ws'), ws: true },
    },
  },
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    watch: false,
  },
});
