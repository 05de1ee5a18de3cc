// Vite builds the app into dist/, which is committed and embedded in the
// `trib` binary by crates/web. The build must be byte-for-byte reproducible
// from package-lock.json (scripts/test.sh rebuilds and compares): no source
// maps, no build timestamps, content-hashed file names only.
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

export default defineConfig({
  plugins: [svelte()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    // Everything is served from the binary over loopback or a LAN: one
    // module per entry is simpler to audit than a chunk graph.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    target: 'es2022',
  },
  server: {
    // `npm run dev` proxies the API to a node on :8080 (docs/web.md).
    proxy: { '/v1': 'http://127.0.0.1:8080' },
  },
});
