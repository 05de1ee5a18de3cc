// A contributor's earnings: the payout lines of GET /v1/payouts (one line
// of one settled receipt each), what each line was paid for, the running
// total by block for the chart, and the receipt's weights as shares.
// Amounts stay exact (bigint base units); only the chart's y values are
// converted to floating OPEN, for drawing.

import { ONE_OPEN } from './amount';

/** Why a payout line was paid (`PayoutRole`, tagged by `role`). */
export type PayoutRole =
  | { role: 'contributor'; contribution: string }
  | { role: 'adapter_owner' }
  | { role: 'base_model_owner' }
  | { role: 'stakers' }
  | { role: 'treasury' };

/** One payout line of GET /v1/payouts?contributor=… (`Payout`). */
export interface Payout {
  receipt: string;
  line: number;
  height: number;
  recipient: string;
  role: PayoutRole;
  amount: string;
}

/** One page of GET /v1/payouts?contributor=… (`PayoutPage`). */
export interface PayoutPage {
  items: Payout[];
  total: number;
  next: number | null;
}

/** The line's reason in words. */
export function roleText(r: PayoutRole): string {
  switch (r.role) {
    case 'contributor':
      return 'data contributor';
    case 'adapter_owner':
      return "adapter's owner";
    case 'base_model_owner':
      return "base model's owner";
    case 'stakers':
      return 'gOPEN stakers';
    case 'treasury':
      return 'treasury';
  }
}

/** The sum of the lines, exact. */
export function totalEarned(lines: Payout[]): bigint {
  return lines.reduce((s, l) => s + BigInt(l.amount), 0n);
}

/** Earnings to date after each block with a payout: `[heights, OPEN]`, heights ascending. */
export function cumulativeByBlock(lines: Payout[]): [number[], number[]] {
  const byHeight = new Map<number, bigint>();
  for (const l of lines) byHeight.set(l.height, (byHeight.get(l.height) ?? 0n) + BigInt(l.amount));
  const heights = [...byHeight.keys()].sort((a, b) => a - b);
  let sum = 0n;
  const totals = heights.map((h) => {
    sum += byHeight.get(h)!;
    return toOpenNumber(sum);
  });
  return [heights, totals];
}

/** Base units as a JavaScript number of OPEN (for drawing only: not exact). */
export function toOpenNumber(base: bigint): number {
  return Number(base / ONE_OPEN) + Number(base % ONE_OPEN) / Number(ONE_OPEN);
}

/** A receipt's weights (`[contribution, weight]`) as shares of their sum, in basis points. */
export function weightShares(weights: [string, number][]): { contribution: string; weight: number; bps: number }[] {
  const sum = weights.reduce((s, [, w]) => s + BigInt(w), 0n);
  return weights.map(([contribution, weight]) => ({
    contribution,
    weight,
    bps: sum === 0n ? 0 : Number((BigInt(weight) * 10_000n) / sum),
  }));
}
