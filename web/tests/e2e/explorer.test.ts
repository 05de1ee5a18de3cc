// The explorer against a real node: a transfer signed here with the app's
// own encoder (src/lib/tx.ts) is found by its hash; its block, sender
// account and a height are reachable by search and links; bad input and
// an unknown block are explained in words.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { fromHex, toHex } from '../../src/lib/bytes';
import { keyFromSeed } from '../../src/lib/keys';
import { signTransaction } from '../../src/lib/tx';
import { LAPTOP, open, shot, type Session } from './browser';

async function json(url: string, init?: RequestInit) {
  const res = await fetch(url, init);
  const body = await res.json();
  if (!res.ok) throw new Error(`${url}: ${JSON.stringify(body)}`);
  return body;
}

describe('the explorer', () => {
  let s: Session;
  let hash: string;
  beforeAll(async () => {
    s = await open(LAPTOP);
    const file = JSON.parse(readFileSync(join(inject('home'), 'keys', 'producer.json'), 'utf8'));
    const key = keyFromSeed(fromHex(file.secret.seed));
    const status = await json(`${s.baseUrl}/v1/status`);
    const account = await json(`${s.baseUrl}/v1/accounts/${key.address}`);
    const params = await json(`${s.baseUrl}/v1/params`);
    const signed = signTransaction(
      {
        chain_id: status.chain_id,
        sender: toHex(key.publicKey),
        nonce: account.next_nonce,
        fee: params.min_fee,
        action: { type: 'transfer', to: 'trib' + '11'.repeat(20), amount: '2000000000000000000' },
      },
      key,
    );
    const res = await json(`${s.baseUrl}/v1/tx`, { method: 'POST', body: toHex(signed.encoded) });
    hash = res.hash;
    expect(hash).toBe(signed.hash);
    for (let i = 0; (await json(`${s.baseUrl}/v1/tx/${hash}`)).status !== 'committed'; i++) {
      if (i > 120) throw new Error(`transaction ${hash} not committed in 30 s`);
      await new Promise((r) => setTimeout(r, 250));
    }
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
    expect(s.errors).toEqual([]);
  });

  it('explains bad searches and unknown blocks in words', async () => {
    const { page, baseUrl } = s;
    await page.goto(baseUrl + '/explorer');
    await page.getByLabel('Block height, address or hash').fill('hello');
    await page.getByRole('button', { name: 'Search' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('is not a block height');
    await page.getByLabel('Block height, address or hash').fill('999999');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(`${baseUrl}/explorer/block/999999`);
    const alert = page.getByRole('alert');
    await expect.poll(() => alert.textContent()).toMatch(/Could not load block:.*999999/);
    await shot(page, 'error-in-words');
  });
});
