import { describe, expect, it } from 'vitest';
import { cumulativeByBlock, roleText, toOpenNumber, totalEarned, weightShares, type Payout } from './earnings';

const ONE = 10n ** 18n;
const line = (height: number, open: bigint, n = 0): Payout => ({
  receipt: String(n).repeat(64).slice(0, 64),
  line: n,
  height,
  recipient: 'trib' + 'a'.repeat(40),
  role: { role: 'contributor', contribution: 'c'.repeat(64) },
  amount: open.toString(),
});

describe('earnings', () => {
  it('sums payout lines exactly', () => {
    // 0.1 + 0.2 in base units: exact, unlike floating point.
    expect(totalEarned([line(1, ONE / 10n), line(2, ONE / 5n)])).toBe((3n * ONE) / 10n);
    expect(totalEarned([])).toBe(0n);
  });

  it('accumulates by block in height order, several lines of a block together', () => {
    const [h, y] = cumulativeByBlock([line(9, 2n * ONE), line(3, ONE), line(9, ONE / 2n, 1)]);
    expect(h).toEqual([3, 9]);
    expect(y).toEqual([1, 3.5]);
    expect(cumulativeByBlock([])).toEqual([[], []]);
  });

  it('names every payout role', () => {
    expect(roleText({ role: 'contributor', contribution: 'x' })).toBe('data contributor');
    expect(roleText({ role: 'adapter_owner' })).toBe("adapter's owner");
    expect(roleText({ role: 'stakers' })).toBe('gOPEN stakers');
  });

  it('converts for the chart and turns weights into shares', () => {
    expect(toOpenNumber(ONE * 5n + ONE / 4n)).toBe(5.25);
    expect(weightShares([['a', 750_000], ['b', 250_000]])).toEqual([
      { contribution: 'a', weight: 750_000, bps: 7500 },
      { contribution: 'b', weight: 250_000, bps: 2500 },
    ]);
    expect(weightShares([['a', 0]])[0].bps).toBe(0);
  });
});
