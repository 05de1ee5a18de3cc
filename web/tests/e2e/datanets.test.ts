// Datanets against a real node: with the dev producer's key imported, the
// create form stores the descriptor and signs CreateDatanet; the list
// finds it by search; its page takes one file by drag and drop and one by
// the file chooser, with upload progress and the per-row report (a
// duplicate row rejected with its reason), and the Contribute transaction
// signed from the report lands on the ledger; the owner approves one
// contribution and rejects the other (a reason is required) from the
// curation queue, publishes version 1 with the planned Merkle root, and
// grants, checks and revokes access on a permissioned datanet.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAPTOP, importKey, open, shot, signInDialog, type Session } from './browser';

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
    await importKey(page, 'producer', PASS);
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

  it('approves and rejects from the curation queue, then publishes version 1', async () => {
    const { page, baseUrl } = s;
    // The second upload's contribution, signed now: two wait in the queue.
    await page.getByTestId('upload').nth(1).getByRole('button', { name: 'Sign the contribution' }).click();
    await signInDialog(page);
    const queue = page.getByTestId('curation-queue');
    await expect.poll(async () => (await queue.textContent()) ?? '', { timeout: 15_000 }).toContain('more.txt');
    expect(await queue.textContent()).toContain('rivers.txt');
    await shot(page, 'datanet-curation');

    await page.getByRole('button', { name: 'Approve rivers.txt' }).click();
    expect(await signInDialog(page)).toContain('curate');
    await expect.poll(async () => (await queue.textContent()) ?? '', { timeout: 15_000 }).not.toContain('rivers.txt');

    // A rejection without a reason is refused in words before anything is signed.
    await page.getByRole('button', { name: 'Reject more.txt' }).click();
    await page.getByText('a rejection must state a reason').waitFor();
    await page.getByLabel('Reason (required to reject)').fill('about deltas, not rivers');
    await page.getByRole('button', { name: 'Reject more.txt' }).click();
    await signInDialog(page);
    await page.getByTestId('queue-empty').waitFor({ timeout: 15_000 });
    const table = (await page.getByTestId('contributions').textContent()) ?? '';
    expect(table).toContain('accepted');
    expect(table).toContain('rejected: about deltas, not rivers');

    await page.getByRole('button', { name: 'Prepare version 1' }).click();
    const plan = page.getByTestId('publish-plan');
    await plan.waitFor();
    const planText = (await plan.textContent()) ?? '';
    expect(planText).toMatch(/Rows3/);
    const root = /[0-9a-f]{64}/.exec(planText)![0];
    await shot(page, 'datanet-publish');
    await page.getByRole('button', { name: 'Sign and publish version 1' }).click();
    expect(await signInDialog(page)).toContain(root);
    await expect.poll(async () => (await page.getByTestId('versions').textContent()) ?? '', { timeout: 15_000 }).toContain(root);
    const versions = await (await fetch(`${baseUrl}/v1/datanets/rivers/versions`)).json();
    expect(versions).toMatchObject([{ version: 1, root, rows: 3, on_ledger: true }]);
    expect(s.errors).toEqual([]);
  });

  it('grants, checks and revokes access on a permissioned datanet', async () => {
    const { page } = s;
    const bob = 'trib' + '0b'.repeat(20);
    await page.getByRole('link', { name: 'Datanets', exact: true }).click();
    await page.getByLabel('Name', { exact: false }).fill('private-rivers');
    await page.getByLabel('Who may train on it').selectOption('permissioned');
    await page.getByText('Upload quotas').click();
    await page.getByLabel('Files per contributor per UTC day').fill('7');
    await page.getByRole('button', { name: 'Review datanet' }).click();
    await signInDialog(page);
    await page.getByRole('link', { name: 'private-rivers', exact: true }).click();
    const stored = await (await fetch(`${s.baseUrl}/v1/datanets/private-rivers`)).json();
    expect(stored.quotas).toMatchObject({ files_per_contributor_per_day: 7, max_file_bytes: 16 << 20 });

    await page.getByLabel('Address').fill(bob);
    await page.getByRole('button', { name: 'Check access' }).click();
    await expect.poll(() => page.getByTestId('grant-answer').textContent()).toContain('has no grant');
    for (const [button, answer] of [
      ['Grant access', 'may train on private-rivers'],
      ['Revoke access', 'has no grant'],
    ]) {
      await page.getByRole('button', { name: button }).click();
      expect(await signInDialog(page)).toContain(bob);
      // The page reloads the datanet after a transaction: ask again.
      await page.getByLabel('Address').fill(bob);
      await page.getByRole('button', { name: 'Check access' }).click();
      await expect.poll(() => page.getByTestId('grant-answer').textContent(), { timeout: 15_000 }).toContain(answer);
      if (button === 'Grant access') await shot(page, 'datanet-grants');
    }
    await page.getByLabel('Address').fill('trib12');
    await page.getByRole('button', { name: 'Check access' }).click();
    await page.getByText('invalid address').waitFor();
    expect(s.errors).toEqual([]);
  });
});
