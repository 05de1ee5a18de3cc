// The explorer against a real node: a transfer signed here with the app's
// own encoder (src/lib/tx.ts) is found by its hash; its block, sender
// account and a height are reachable by search and links; the account's
// state proof is checked in the page, as are a parameter entry's and an
// absent entry's; bad input, a hash nothing has and an unknown block are
// explained in words.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAPTOP, open, shot, type Session } from './browser';
import { homeKey, submit } from './ledger';

describe('the explorer', () => {
  let s: Session;
  let hash: string;
  beforeAll(async () => {
    s = await open(LAPTOP);
    const key = homeKey('producer');
    ({ hash } = await submit(s.baseUrl, key, { type: 'transfer', to: 'trib' + '11'.repeat(20), amount: '2000000000000000000' }));
  });
  afterAll(async () => s?.close());

  it('finds a transaction by hash and follows it to its block and sender', async () => {
    const { page, baseUrl } = s;
    await page.goto(baseUrl + '/explorer');
    await page.getByRole('heading', { name: 'Latest blocks' }).waitFor();
    await shot(page, 'explorer');
    await page.getByLabel('Block height, address or hash').fill(hash);
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(`${baseUrl}/explorer/tx/${hash}`);
    await expect.poll(() => page.getByTestId('tx-action').textContent()).toContain('2 OPEN');
    expect(await page.getByTestId('tx-action').textContent()).toContain('trib' + '11'.repeat(20));
    expect(await page.getByTestId('tx-facts').textContent()).toMatch(/in block \d+/);
    await shot(page, 'explorer-tx');
    const height = (await page.getByTestId('tx-facts').textContent())!.match(/in block (\d+)/)![1];
    await page.getByTestId('tx-facts').getByRole('link', { name: height, exact: true }).click();
    await page.waitForURL(`${baseUrl}/explorer/block/${height}`);
    await page.getByRole('link', { name: hash }).waitFor();
    await shot(page, 'explorer-block');
    await page.getByRole('link', { name: hash }).click();
    await page.getByTestId('tx-facts').getByRole('link', { name: /^trib[0-9a-f]{40}$/ }).click();
    await page.waitForURL(/\/explorer\/account\/trib[0-9a-f]{40}$/);
    await expect.poll(() => page.getByTestId('account-facts').textContent()).toContain('OPEN');
    await page.getByRole('button', { name: 'Check the proof of account' }).click();
    await expect.poll(() => page.getByTestId('proof-result').textContent()).toMatch(/^\s*Proven: block \d+'s state root commits to this value/);
    expect(s.errors).toEqual([]);
  });

  it('shows any state entry and checks its proof, present or absent', async () => {
    const { page, baseUrl } = s;
    await page.goto(baseUrl + '/explorer/state?key=params');
    await expect.poll(() => page.getByTestId('state-value').textContent()).toContain('min_fee');
    await page.getByRole('button', { name: 'Check the proof of params' }).click();
    await expect.poll(() => page.getByTestId('proof-result').textContent()).toContain('Proven');
    await shot(page, 'explorer-proof');
    const nobody = 'trib' + '22'.repeat(20);
    await page.getByLabel('State key').fill(`account/${nobody}`);
    await page.getByRole('button', { name: 'Show' }).click();
    await expect.poll(() => page.getByTestId('state-value').textContent()).toContain('No entry');
    await page.getByRole('button', { name: 'Check the proof of account' }).click();
    await expect.poll(() => page.getByTestId('proof-result').textContent()).toContain(`account/${nobody} has no entry`);
    await page.getByLabel('State key').fill('bogus/1');
    await page.getByRole('button', { name: 'Show' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('unknown kind "bogus"');
    expect(s.errors).toEqual([]);
  });

  it('explains bad searches and unknown blocks in words', async () => {
    const { page, baseUrl } = s;
    await page.goto(baseUrl + '/explorer');
    await page.getByLabel('Block height, address or hash').fill('hello');
    await page.getByRole('button', { name: 'Search' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('is not a block height');
    await page.getByLabel('Block height, address or hash').fill('ab'.repeat(32));
    await page.getByRole('button', { name: 'Search' }).click();
    await expect
      .poll(() => page.getByRole('alert').textContent())
      .toContain('not found: no transaction, receipt, adapter, datanet, contribution or base model on this ledger');
    await page.getByLabel('Block height, address or hash').fill('999999');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(`${baseUrl}/explorer/block/999999`);
    const alert = page.getByRole('alert');
    await expect.poll(() => alert.textContent()).toMatch(/Could not load block:.*999999/);
    await shot(page, 'error-in-words');
  });
});
