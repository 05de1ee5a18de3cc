// Global setup of the browser tests: a fresh dev node home in a temp dir
// (`trib init --dev`, 300 ms blocks), an encrypted `trib keys` key for the
// import test, a plain one for the governance voter, and `trib node` on a
// free port. The binary is $TRIB_BIN or the workspace's target/debug/trib
// (scripts/test.sh builds it once).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    baseUrl: string;
    home: string;
    trib: string;
  }
}

export const KEY_PASSPHRASE = 'correct horse battery staple';

let node: ChildProcess | undefined;
let home: string | undefined;

export async function setup(project: TestProject) {
  const trib = process.env.TRIB_BIN ?? resolve(__dirname, '../../../target/debug/trib');
  if (!existsSync(trib)) throw new Error(`no trib binary at ${trib}: run cargo build -p trib-cli or set TRIB_BIN`);
  home = mkdtempSync(join(tmpdir(), 'trib-web-e2e-'));
  const run = (...args: string[]) =>
    execFileSync(trib, ['--home', home!, ...args], {
      env: { ...process.env, TRIB_E2E_PASS: KEY_PASSPHRASE },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  run('init', '--dev', '--block-interval-ms', '300');
  run('keys', 'new', 'alice', '--encrypt', '--passphrase-env', 'TRIB_E2E_PASS');
  // A plain key for the governance test's voter (funded and staked there).
  run('keys', 'new', 'voter');
  node = spawn(trib, ['--home', home, 'node', '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  const url = await new Promise<string>((ok, fail) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => fail(new Error(`trib node did not start in 60 s: ${err}`)), 60_000);
    node!.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok(m[1].replace(/\/$/, ''));
      }
    });
    node!.stderr!.on('data', (d) => (err += d));
    node!.on('exit', (code) => fail(new Error(`trib node exited with ${code}: ${err}`)));
  });
  project.provide('baseUrl', url);
  project.provide('home', home);
  project.provide('trib', trib);
}

export async function teardown() {
  node?.kill('SIGTERM');
  if (home) rmSync(home, { recursive: true, force: true });
}
