// Earnings, receipts and adapters against a real node. The ledger steps are
// signed here with the app's encoder: the producer creates a datanet,
// contributes a file, accepts it and publishes version 1, registers a base
// model and an adapter trained on that version; a payer funds itself,
// approves the producer as operator, and the producer settles one paid
// inference that credits the contribution. Then, in the browser, the
// producer's earnings page lists the contribution (status, rows, quality),
// its reputation, the earnings chart and the payout lines; a payout line
// leads to its receipt (line highlighted, weights, verify refused in
// words), the receipt to the adapter's provenance (datanet version and
// Merkle root, training hash) with its state proof checked in the page, and
// the receipt id is found by the explorer's search.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashOf, toHex, utf8 } from '../../src/lib/bytes';
import { keyFromSeed } from '../../src/lib/keys';
import { signRequest } from '../../src/lib/signedRequest';
import { LAPTOP, PHONE, importKey, open, shot, type Session } from './browser';
import { homeKey, json, submit } from './ledger';

const PASS = 'wallet passphrase 3';
const NAME = 'earning-rivers';
const TEXT =
  'A river basin gathers rain from every slope around it and sends it down one channel to the sea. ' +
  'Its shape decides how fast floods rise downstream and how long the river keeps flowing in a dry summer.\n';
const h = (label: string) => toHex(hashOf(utf8(label)));

describe('earnings, receipts and adapters', () => {
  let s: Session;
  const ids = { receipt: h('e2e receipt 1'), adapter: h('e2e adapter'), base: h('e2e base model'), datanet: '', contribution: '', root: '' };

  beforeAll(async () => {
    s = await open(LAPTOP);
    const base = s.baseUrl;
    const producer = homeKey('producer');
    const payer = keyFromSeed(new Uint8Array(32).fill(42));
    const body = JSON.stringify({
      owner: producer.address,
      name: NAME,
      description: 'River basins, for the earnings test.',
      tags: [],
      data_type: 'text',
      curation: { mode: 'owner_approval' },
      stake_per_contribution: '0',
      visibility: 'public',
    });
    const created = await json(`${base}/v1/datanets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...signRequest(producer, 'POST', '/v1/datanets', utf8(body)) },
      body,
    });
    ids.datanet = created.id;
    await submit(base, producer, created.action);
    const path = `/v1/datanets/${NAME}/contributions?file_name=basins.txt`;
    const file = utf8(TEXT);
    const up = await json(base + path, { method: 'POST', headers: signRequest(producer, 'POST', path, file), body: file });
    ids.contribution = up.action.contribution;
    await submit(base, producer, up.action);
    await submit(base, producer, { type: 'curate', contribution: ids.contribution, accept: true, reason: '' });
    const plan = await json(`${base}/v1/datanets/${NAME}/publish`, { method: 'POST' });
    ids.root = plan.root;
    await submit(base, producer, plan.action);

    const params = await json(`${base}/v1/params`);
    const one = 10n ** 18n;
    const min = BigInt(params.model_min_price_per_1k);
    const max = BigInt(params.model_max_price_per_1k);
    const price = (one < min ? min : one > max ? max : one).toString();
    await submit(base, producer, { type: 'register_base_model', model: ids.base, name: 'e2e-base', architecture: 'llama', licence: 'apache-2.0' });
    await submit(base, producer, {
      type: 'register_adapter',
      adapter: ids.adapter,
      base: ids.base,
      name: 'basins-lora',
      datanets: [[ids.datanet, 1]],
      config_hash: h('e2e training config'),
      metrics_hash: h('e2e metrics'),
      price_in_per_1k: price,
      price_out_per_1k: price,
    });
    await submit(base, producer, { type: 'transfer', to: payer.address, amount: (100n * one).toString() });
    await submit(base, payer, { type: 'approve_operator', operator: producer.address, allowance: (50n * one).toString() });
    await submit(base, producer, {
      type: 'settle_inference',
      receipt: ids.receipt,
      payer: payer.address,
      adapter: ids.adapter,
      base: ids.base,
      prompt_tokens: 1000,
      completion_tokens: 1000,
      weights: [[ids.contribution, 1_000_000]],
      method: 'token_spans',
      evidence_hash: h('e2e evidence'),
      datanets: [[ids.datanet, 1]],
    });
  });
  afterAll(async () => s?.close());

  it("shows the producer's contributions, reputation, earnings chart and payout lines", async () => {
    const { page, baseUrl } = s;
    await page.goto(baseUrl + '/wallet');
    await importKey(page, 'producer', PASS);
    await page.getByTestId('balance-open').waitFor();
    await page.getByRole('link', { name: 'Earnings', exact: true }).click();
    await page.getByTestId('payouts').waitFor({ timeout: 15_000 });
    const mine = (await page.getByTestId('my-contributions').textContent()) ?? '';
    expect(mine).toContain('basins.txt');
    expect(mine).toContain(NAME);
    expect(mine).toMatch(/accepted/);
    expect(mine).toMatch(/\d+%/);
    expect(await page.getByTestId('reputation').textContent()).toContain(NAME);
    expect(await page.getByTestId('earned-total').textContent()).toMatch(/^[0-9.]+ OPEN in \d+ payout lines?$/);
    expect(await page.getByTestId('payouts').textContent()).toContain('data contributor');
    // uPlot drew the chart on a canvas.
    expect(await page.getByTestId('chart').locator('canvas').count()).toBe(1);
    await shot(page, 'earnings');
    expect(s.errors).toEqual([]);
  });

  it('follows a payout line to its receipt, verifies it, and on to the adapter and its proof', async () => {
    const { page, baseUrl } = s;
    await page.getByRole('row').filter({ hasText: 'data contributor' }).getByRole('link', { name: /^Receipt / }).click();
    await page.waitForURL(new RegExp(`/explorer/receipt/${ids.receipt}\\?line=\\d+$`));
    await page.getByTestId('receipt-facts').waitFor();
    const current = page.getByTestId('receipt-lines').locator('tr[aria-current="true"]');
    expect(await current.textContent()).toContain('data contributor');
    expect(await page.getByTestId('receipt-weights').textContent()).toContain('100.00%');
    expect(await page.getByTestId('receipt-facts').textContent()).toContain('token_spans');
    await page.getByRole('button', { name: 'Verify the receipt' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('keeps no answer for receipt');
    await shot(page, 'explorer-receipt');

    await page.getByTestId('receipt-facts').getByRole('link', { name: /^[0-9a-f]{10}…$/ }).click();
    await page.waitForURL(`${baseUrl}/explorer/adapter/${ids.adapter}`);
    await expect.poll(() => page.getByTestId('adapter-facts').textContent()).toContain('basins-lora');
    expect(await page.getByTestId('adapter-facts').textContent()).toContain(h('e2e training config'));
    const trained = (await page.getByTestId('adapter-datanets').textContent()) ?? '';
    expect(trained).toContain(NAME);
    expect(trained).toContain(ids.root);
    await page.getByRole('button', { name: 'Check the proof of adapter' }).click();
    await expect.poll(() => page.getByTestId('proof-result').textContent()).toContain('Proven');
    await shot(page, 'explorer-adapter');

    await page.goto(baseUrl + '/explorer');
    await page.getByLabel('Block height, address or hash').fill(ids.receipt);
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(`${baseUrl}/explorer/receipt/${ids.receipt}`);
    // The 404s the browser logs are the ones asked for: verify (no stored
    // answer) and the search's transaction lookup; nothing else failed.
    expect(s.errors.filter((e) => !e.includes('status of 404'))).toEqual([]);
    expect(s.errors.length).toBe(2);
  });

  it('renders a receipt at phone width', async () => {
    const phone = await open(PHONE);
    try {
      await phone.page.goto(`${phone.baseUrl}/explorer/receipt/${ids.receipt}`);
      await phone.page.getByTestId('receipt-lines').waitFor();
      expect(await phone.page.getByTestId('receipt-weights').textContent()).toContain('100.00%');
      // Known: the page is still wider than a 390 px screen (docs/web.md, "Not done yet").
      await shot(phone.page, 'explorer-receipt-phone');
      expect(phone.errors).toEqual([]);
    } finally {
      await phone.close();
    }
  });
});
