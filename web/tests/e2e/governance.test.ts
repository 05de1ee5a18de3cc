// Governance against a real node. Set up over the API with the app's
// encoder: a voter key from the node's home is funded and stakes, then
// proposes and passes two changes that lengthen the dev chain's deposit and
// voting periods (5 and 10 blocks of 300 ms are too short to click
// through); both execute after the timelock. In the browser, the voter
// sees the parameters in force and the executed proposals with their
// tallies, proposes a change with less than the minimum deposit, tops the
// deposit up so voting opens, votes yes and sees the provisional tally say
// it passes; a bad fee split is refused in words before anything is signed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAPTOP, importKey, open, shot, signInDialog, type Session } from './browser';
import { homeKey, json, submit } from './ledger';

const PASS = 'wallet passphrase 4';
const ONE = 10n ** 18n;

async function waitFor(what: string, check: () => Promise<boolean>, ms = 45_000) {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`${what}: not within ${ms / 1000} s`);
}

describe('governance', () => {
  let s: Session;
  beforeAll(async () => {
    s = await open(LAPTOP);
    const base = s.baseUrl;
    const producer = homeKey('producer');
    const voter = homeKey('voter');
    await submit(base, producer, { type: 'transfer', to: voter.address, amount: (20_000n * ONE).toString() });
    await submit(base, voter, { type: 'stake', amount: (10_000n * ONE).toString() });
    const before: { id: number }[] = await json(`${base}/v1/proposals`);
    const changes = [
      { param: 'gov_deposit_period_blocks', value: 600 },
      { param: 'gov_voting_period_blocks', value: 600 },
    ] as const;
    for (const change of changes) {
      await submit(base, voter, { type: 'propose', title: `Longer ${change.param}`, description: 'For people who click.', change, deposit: (10n * ONE).toString() });
    }
    const ids = [before.length, before.length + 1];
    for (const id of ids) await submit(base, voter, { type: 'vote', proposal: id, choice: 'yes' });
    await waitFor('both changes executed', async () => {
      const ps: { id: number; status: string }[] = await json(`${base}/v1/proposals`);
      return ids.every((id) => ps.find((p) => p.id === id)?.status === 'executed');
    });
  });
  afterAll(async () => s?.close());

  it('shows parameters and executed proposals, proposes, deposits and votes', async () => {
    const { page, baseUrl } = s;
    await page.goto(baseUrl + '/wallet');
    await importKey(page, 'voter', PASS);
    await page.getByTestId('balance-gopen').waitFor();
    await page.getByRole('link', { name: 'Governance', exact: true }).click();
    await page.getByTestId('params').waitFor();
    expect(await page.getByTestId('params').textContent()).toContain('600 blocks');
    const executed = page.getByTestId('proposal').filter({ hasText: 'Longer gov_voting_period_blocks' });
    expect(await executed.getByTestId('proposal-status').textContent()).toBe('executed');
    expect(await executed.getByTestId('tally').textContent()).toMatch(/^yes [0-9.]+, no 0, abstain 0, veto 0 of [0-9.]+ gOPEN$/);

    // A bad value is refused before anything is signed.
    await page.getByLabel('Title').fill('Bigger blocks');
    await page.getByRole('combobox', { name: /^Parameter/ }).selectOption('fee_split');
    await page.getByLabel('New value').fill('50, 20, 10, 10, 5');
    await page.getByLabel('Deposit (OPEN)').last().fill('4');
    await page.getByRole('button', { name: 'Review proposal' }).click();
    await page.getByText('the five shares sum to 95%, not 100%').waitFor();

    const sign = async (button: string) => {
      await page.getByRole('button', { name: button }).click();
      await signInDialog(page);
    };
    await page.getByRole('combobox', { name: /^Parameter/ }).selectOption('max_block_txs');
    await page.getByLabel('New value').fill('6000');
    await sign('Review proposal');
    const mine = page.getByTestId('proposal').filter({ hasText: 'Bigger blocks' });
    await expect.poll(() => mine.getByTestId('proposal-status').textContent(), { timeout: 15_000 }).toBe('in its deposit period');
    const id = (await mine.getByRole('heading').textContent())!.match(/#(\d+)/)![1];
    await mine.getByLabel('Deposit (OPEN)').fill('6');
    await sign(`Review deposit on #${id}`);
    await expect.poll(() => mine.getByTestId('proposal-status').textContent(), { timeout: 15_000 }).toBe('voting');
    await sign(`Vote yes on #${id}`);
    await expect.poll(() => mine.getByTestId('tally').textContent(), { timeout: 15_000 }).toMatch(/: passed \(timelocked\)$/);
    await shot(page, 'governance');
    expect(s.errors).toEqual([]);
  });
});
