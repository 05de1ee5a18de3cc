// Debian's Chromium driven by playwright-core (no browser download): the
// flags keep it headless, sandbox-free for containers, and off the
// network; each launch gets a fresh profile. `shot` saves a full-page
// screenshot: into a temp dir (named on stderr once) so a test run leaves
// the tree clean, or into docs/screenshots/ (committed, shown in
// docs/web.md) when TRIB_WRITE_SCREENSHOTS=1 asks to regenerate that set.
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { inject } from 'vitest';

export const LAPTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };
const SHOTS =
  process.env.TRIB_WRITE_SCREENSHOTS === '1'
    ? resolve(__dirname, '../../../docs/screenshots')
    : join(tmpdir(), 'trib-web-screenshots');
let told = false;

export interface Session {
  context: BrowserContext;
  page: Page;
  baseUrl: string;
  /** Messages the page logged as errors, and uncaught exceptions. */
  errors: string[];
  close(): Promise<void>;
}

export async function open(viewport = LAPTOP): Promise<Session> {
  const profile = mkdtempSync(join(tmpdir(), 'trib-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    viewport,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  return {
    context,
    page,
    baseUrl: inject('baseUrl'),
    errors,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export async function shot(page: Page, name: string) {
  mkdirSync(SHOTS, { recursive: true });
  if (!told) {
    told = true;
    console.error(`screenshots go to ${SHOTS}`);
  }
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

export type { Browser, Page };

/** Imports the `trib keys` file `name` of the node's home into the wallet page (open at /wallet) under `walletPass`. */
export async function importKey(page: Page, name: string, walletPass: string, filePass?: string) {
  await page.getByLabel('Import a trib keys file').check();
  await page.getByLabel('Key file').setInputFiles(join(inject('home'), 'keys', `${name}.json`));
  if (filePass) await page.getByLabel("The file's passphrase").fill(filePass);
  await page.getByLabel('Wallet passphrase', { exact: false }).first().fill(walletPass);
  await page.getByLabel('Repeat the passphrase').fill(walletPass);
  await page.getByRole('button', { name: 'Import key' }).click();
}

/** In the open confirmation dialog: waits for the review, signs and submits, waits for the block, closes; returns the review's text. */
export async function signInDialog(page: Page): Promise<string> {
  const dialog = page.getByRole('dialog');
  await dialog.getByTestId('tx-review').waitFor();
  const review = (await dialog.getByTestId('tx-review').textContent()) ?? '';
  await dialog.getByRole('button', { name: 'Sign and submit' }).click();
  await dialog.getByTestId('tx-included').waitFor({ timeout: 30_000 });
  await dialog.getByRole('button', { name: 'Close' }).click();
  return review;
}
