// Browser tests: tests/e2e/*.test.ts drive Debian's Chromium through
// playwright-core against a real `trib` node that tests/e2e/node.ts starts
// (fresh dev home in a temp dir, a free port). One file at a time: they
// share the node and the 2-core budget.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/e2e/**/*.test.ts'],
    globalSetup: ['tests/e2e/node.ts'],
    fileParallelism: false,
    testTimeout: 90_000,
    hookTimeout: 90_000,
  },
});
