// The wallet against a real node: import the dev producer's `trib keys`
// file (plain) and alice's (Argon2id + XChaCha20-Poly1305), then transfer,
// stake, unstake and delegate through the confirmation step, each
// followed to its block and checked on the ledger over the API; a refused
// claim shows the node's reason in words; a reload locks the key and a
// wrong passphrase is named.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { LAPTOP, PHONE, importKey, open, shot, type Session, type Page } from './browser';
import { KEY_PASSPHRASE } from './node';

const WALLET_PASS = 'wallet passphrase 1';
const keyFile = (name: string) => join(inject('home'), 'keys', `${name}.json`);
const addressIn = (name: string) => JSON.parse(readFileSync(keyFile(name), 'utf8')).address as string;

async function account(s: Session, address: string) {
  const res = await fetch(`${s.baseUrl}/v1/accounts/${address}`);
  return (await res.json()) as { balance: string; staked: string; delegate: string | null };
}

/** Opens the review of a form's action, checks it, signs, waits for the block. */
async function signThrough(page: Page, review: string, expectLines: string[], screenshot?: string) {
  await page.getByRole('button', { name: review }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByTestId('tx-review').waitFor();
  const text = (await dialog.getByTestId('tx-review').textContent()) ?? '';
  for (const l of expectLines) expect(text).toContain(l);
  expect(await dialog.getByTestId('tx-fee').textContent()).toMatch(/^[0-9.]+ OPEN$/);
  if (screenshot) await shot(page, screenshot);
  await dialog.getByRole('button', { name: 'Sign and submit' }).click();
  await dialog.getByTestId('tx-included').waitFor({ timeout: 30_000 });
  const included = (await dialog.getByTestId('tx-included').textContent()) ?? '';
  expect(included).toMatch(/included in block \d+/);
  await dialog.getByRole('button', { name: 'Close' }).click();
}

describe('the wallet', () => {
  let s: Session;
  beforeAll(async () => {
    s = await open(LAPTOP);
  });
  afterAll(async () => s?.close());

  it('imports a plain trib keys file and shows OPEN and gOPEN', async () => {
    const { page, baseUrl } = s;
    await page.goto(baseUrl + '/wallet');
    await page.getByRole('heading', { name: 'Connect a wallet' }).waitFor();
    await importKey(page, 'producer', WALLET_PASS);
    const producer = addressIn('producer');
    await expect.poll(() => page.getByTestId('key-address').first().textContent()).toBe(producer);
    const onChain = await account(s, producer);
    const open = BigInt(onChain.balance) / 10n ** 18n;
    await expect.poll(() => page.getByTestId('balance-open').textContent()).toMatch(new RegExp(`^${open}(\\.|$)`));
    expect(await page.getByTestId('balance-gopen').textContent()).toBe('0');
    // The account switcher in the header shows the connected key.
    expect(await page.locator('.lock-state').textContent()).toContain('unlocked');
  });

  it('transfers, stakes, unstakes and delegates with the exact bytes the node verifies', async () => {
    const { page } = s;
    const alice = addressIn('alice');
    const producer = addressIn('producer');
    await page.getByLabel('Recipient address').fill(alice);
    await page.getByLabel('Amount (OPEN)').fill('1.5');
    await signThrough(page, 'Review transfer', ['transfer', alice, '1.5 OPEN'], 'wallet-confirm');
    expect((await account(s, alice)).balance).toBe('1500000000000000000');

    await page.getByLabel('Amount to stake (OPEN)').fill('10');
    await signThrough(page, 'Review stake', ['stake', '10 OPEN']);
    await page.getByLabel('Amount to unstake (gOPEN)').fill('2.25');
    await signThrough(page, 'Review unstake', ['unstake', '2.25 OPEN']);
    expect((await account(s, producer)).staked).toBe('7750000000000000000');
    await expect.poll(() => page.getByTestId('balance-gopen').textContent()).toBe('7.75');

    await page.getByLabel('Vote with my gOPEN through').fill(alice);
    await signThrough(page, 'Review delegation', ['delegate', alice]);
    expect((await account(s, producer)).delegate).toBe(alice);
    await shot(page, 'wallet');
    expect(s.errors).toEqual([]);
  });

  it("shows the node's refusal in words", async () => {
    const { page } = s;
    // Nothing was settled on this chain: the accrued rewards shown next to the claim are zero.
    await expect.poll(() => page.getByTestId('staking-rewards').textContent()).toBe('Accrued: 0 OPEN');
    await page.getByRole('button', { name: 'Review claim' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('button', { name: 'Sign and submit' }).click();
    await expect.poll(() => dialog.getByRole('alert').textContent()).toContain('has no staking rewards to claim');
    await dialog.getByRole('button', { name: 'Close' }).click();
    // Invalid input never reaches the signer.
    await page.getByLabel('Recipient address').fill('trib123');
    await page.getByLabel('Amount (OPEN)').fill('1');
    await page.getByRole('button', { name: 'Review transfer' }).click();
    await expect.poll(() => page.getByRole('alert').first().textContent()).toContain('invalid address');
  });

  it('imports an encrypted trib keys file, locks on reload and names a wrong passphrase', async () => {
    const { page, baseUrl } = s;
    await importKey(page, 'alice', WALLET_PASS, KEY_PASSPHRASE);
    const alice = addressIn('alice');
    await expect.poll(() => page.getByTestId('key-address').nth(1).textContent(), { timeout: 30_000 }).toBe(alice);
    await expect.poll(() => page.getByTestId('balance-open').textContent()).toBe('1.5');
    await page.goto(baseUrl + '/wallet');
    await page.getByRole('heading', { name: /^Unlock / }).waitFor();
    await page.getByLabel('Wallet passphrase').first().fill('not the passphrase');
    await page.getByRole('button', { name: 'Unlock' }).click();
    await expect.poll(() => page.getByRole('alert').first().textContent()).toContain('wrong passphrase');
    await page.getByLabel('Wallet passphrase').first().fill(WALLET_PASS);
    await page.getByRole('button', { name: 'Unlock' }).click();
    await expect.poll(() => page.getByTestId('balance-open').textContent()).toBe('1.5');
  });
});

describe('the wallet at phone width', () => {
  let s: Session;
  beforeAll(async () => {
    s = await open(PHONE);
  });
  afterAll(async () => s?.close());

  it('creates a key in the browser and fits the screen', async () => {
    const { page, baseUrl } = s;
    await page.goto(baseUrl + '/wallet');
    await page.getByLabel('Name').fill('phone');
    await page.getByLabel('Wallet passphrase', { exact: false }).first().fill(WALLET_PASS);
    await page.getByLabel('Repeat the passphrase').fill(WALLET_PASS);
    await page.getByRole('button', { name: 'Create key' }).click();
    await expect.poll(() => page.getByTestId('key-address').first().textContent()).toMatch(/^trib[0-9a-f]{40}$/);
    await expect.poll(() => page.getByTestId('balance-open').textContent()).toBe('0');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await shot(page, 'wallet-phone');
    expect(s.errors).toEqual([]);
  });
});
