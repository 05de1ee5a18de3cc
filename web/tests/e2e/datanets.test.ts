// Datanets against a real node: with the dev producer's key imported, the
// create form stores the descriptor and signs CreateDatanet; the list
// finds it by search; its page takes one file by drag and drop and one by
// the file chooser, with upload progress and the per-row report (a
// duplicate row rejected with its reason), and the Contribute transaction
// signed from the report lands on the ledger.
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { join } from 'node:path';
import { LAPTOP, open, shot, type Session } from './browser';

const PASS = 'wallet passphrase 2';
// Paragraphs over the default 200-byte row minimum, so each is one row.
const SENTENCES = [
  'Rivers carry sediment from the mountains down to the sea over thousands of years. The load they carry depends on the slope, the flow and the rock they cross. Floods move more in a day than a quiet year does.',
  'A tributary joins a larger river and adds its water to the main stream. Where two rivers meet, the water of each can run side by side for miles before it mixes. Many great rivers are fed by hundreds of tributaries.',
  'Wetlands along the banks filter the water and shelter many kinds of birds. They slow floods by holding water like a sponge and release it later. Draining them for farms has changed how many rivers behave.',
];
const MORE =
  'Deltas form where a river slows and drops its sediment at the coast. Over centuries the river shifts its mouth from one side of the delta to the other. Some deltas grow into the sea by many metres each year.';

describe('datanets', () => {
  let s: Session;
  beforeAll(async () => {
    s = await open(LAPTOP);
  });
  afterAll(async () => s?.close());

  it('creates a datanet through the form and finds it by search', async () => {
    const { page, baseUrl } = s;
    await page.goto(baseUrl + '/wallet');
    await page.getByLabel('Import a trib keys file').check();
    await page.getByLabel('Key file').setInputFiles(join(inject('home'), 'keys', 'producer.json'));
    await page.getByLabel('Wallet passphrase', { exact: false }).first().fill(PASS);
    await page.getByLabel('Repeat the passphrase').fill(PASS);
    await page.getByRole('button', { name: 'Import key' }).click();
    await page.getByTestId('balance-open').waitFor();

    await page.getByRole('link', { name: 'Datanets', exact: true }).click();
    await page.getByLabel('Name', { exact: false }).fill('rivers');
    await page.getByLabel('Description').fill('Plain sentences about rivers.');
    await page.getByLabel('Tags', { exact: false }).fill('geography, water');
    await page.getByLabel('Stake per contribution', { exact: false }).fill('0.5');
    await page.getByRole('button', { name: 'Review datanet' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByTestId('tx-review').waitFor();
    expect(await dialog.getByTestId('tx-review').textContent()).toContain('0.5 OPEN');
    await dialog.getByRole('button', { name: 'Sign and submit' }).click();
    await dialog.getByTestId('tx-included').waitFor({ timeout: 30_000 });
    await dialog.getByRole('button', { name: 'Close' }).click();

    await page.reload();
    await page.getByRole('searchbox').fill('water');
    await page.getByRole('link', { name: 'rivers' }).waitFor();
    await page.getByRole('searchbox').fill('no such thing');
    await page.getByText('No datanet matches').waitFor();
    await page.getByRole('searchbox').fill('');
    await shot(page, 'datanets');
    expect(s.errors).toEqual([]);
  });

  it('uploads by drag and drop and by the chooser, shows the row report and signs the contribution', async () => {
    const { page, baseUrl } = s;
    // A reload locked the key: unlock it, then go to the datanet in the app.
    await page.goto(baseUrl + '/wallet');
    await page.getByLabel('Wallet passphrase').first().fill(PASS);
    await page.getByRole('button', { name: 'Unlock' }).click();
    await page.getByTestId('balance-open').waitFor();
    await page.getByRole('link', { name: 'Datanets', exact: true }).click();
    await page.getByRole('link', { name: 'rivers' }).click();
    await page.getByTestId('datanet-facts').waitFor();
    // Drag and drop: a DataTransfer with a file, dropped on the zone.
    const text = SENTENCES.join('\n\n') + '\n\n' + SENTENCES[0] + '\n';
    const dt = await page.evaluateHandle((t) => {
      const d = new DataTransfer();
      d.items.add(new File([t], 'rivers.txt', { type: 'text/plain' }));
      return d;
    }, text);
    await page.dispatchEvent('.dropzone', 'drop', { dataTransfer: dt });
    const first = page.getByTestId('upload').first();
    await first.getByTestId('report-summary').waitFor({ timeout: 30_000 });
    expect(await first.getByTestId('report-summary').textContent()).toMatch(/^3 of 4 rows accepted/);
    const report = (await first.getByTestId('row-report').textContent()) ?? '';
    expect(report).toContain('accepted');
    expect(report).toMatch(/duplicate/);
    expect(await first.getByRole('progressbar').getAttribute('value')).toBe('100');
    await shot(page, 'datanet-upload');

    await first.getByRole('button', { name: 'Sign the contribution' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByTestId('tx-review').waitFor();
    expect(await dialog.getByTestId('tx-review').textContent()).toContain('contribute');
    await dialog.getByRole('button', { name: 'Sign and submit' }).click();
    await dialog.getByTestId('tx-included').waitFor({ timeout: 30_000 });
    await dialog.getByRole('button', { name: 'Close' }).click();
    await expect
      .poll(async () => (await page.getByTestId('contributions').textContent()) ?? '', { timeout: 15_000 })
      .toContain('rivers.txt');

    // The chooser: a second file, shown with its own progress and report.
    await page.locator('input[type=file]').setInputFiles({
      name: 'more.txt',
      mimeType: 'text/plain',
      buffer: Buffer.from(MORE + '\n'),
    });
    const second = page.getByTestId('upload').nth(1);
    await expect.poll(() => second.getByTestId('report-summary').textContent(), { timeout: 30_000 }).toMatch(/^1 of 1 rows accepted/);
    await shot(page, 'datanet');
    expect(s.errors).toEqual([]);
  });
});
