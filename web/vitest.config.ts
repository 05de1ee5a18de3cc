// Unit tests of the TypeScript code (src/**/*.test.ts), in Node.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: { include: ['src/**/*.test.ts'], environment: 'node' },
});
