// Governance in the app: the governed parameters (the `Params` field each
// `ParamChange` sets, how to read and write its value), building a
// proposal's change from form text, the proposal statuses in words, and a
// provisional tally computed as the ledger's `decide`
// (crates/ledger/src/modules/governance.rs) computes the final one.

import { formatOpen, parseOpen } from './amount';
import type { ParamChange } from './tx';

export type ParamKind = 'amount' | 'count' | 'blocks' | 'bps' | 'bool' | 'fee_split';

/** Every governed parameter: the `ParamChange` name, the `Params` field, what it is. */
export const PARAMS: { param: ParamChange['param']; field: string; kind: ParamKind; about: string }[] = [
  { param: 'max_block_txs', field: 'max_block_txs', kind: 'count', about: 'most transactions in one block' },
  { param: 'max_tx_bytes', field: 'max_tx_bytes', kind: 'count', about: 'largest signed transaction, in bytes' },
  { param: 'min_fee', field: 'min_fee', kind: 'amount', about: 'smallest fee a transaction may pay' },
  { param: 'unbonding_period_blocks', field: 'unbonding_period_blocks', kind: 'blocks', about: 'blocks from unstaking to the release of the OPEN' },
  { param: 'gov_min_deposit', field: 'gov_min_deposit', kind: 'amount', about: 'total deposit a proposal needs before voting opens' },
  { param: 'gov_deposit_period_blocks', field: 'gov_deposit_period_blocks', kind: 'blocks', about: 'blocks a proposal may wait for its minimum deposit' },
  { param: 'gov_voting_period_blocks', field: 'gov_voting_period_blocks', kind: 'blocks', about: 'blocks a proposal is open for votes' },
  { param: 'gov_quorum_bps', field: 'gov_quorum_bps', kind: 'bps', about: 'share of all gOPEN that must vote for the result to count' },
  { param: 'gov_threshold_bps', field: 'gov_threshold_bps', kind: 'bps', about: 'share of Yes among Yes, No and Veto needed to pass (strictly above)' },
  { param: 'gov_veto_bps', field: 'gov_veto_bps', kind: 'bps', about: 'share of Veto among all votes that rejects outright (strictly above)' },
  { param: 'gov_timelock_blocks', field: 'gov_timelock_blocks', kind: 'blocks', about: 'blocks from a passing vote to the execution of its change' },
  { param: 'gov_deposit_burn_on_fail', field: 'gov_deposit_burn_on_fail', kind: 'bool', about: 'burn the deposits of proposals that expire, miss quorum or are vetoed' },
  { param: 'fee_split', field: 'fee_split', kind: 'fee_split', about: 'split of settled inference fees' },
  { param: 'datanet_slash_bps', field: 'datanet_slash_bps', kind: 'bps', about: "share of a rejected contribution's stake that is slashed" },
  { param: 'datanet_challenge_window_blocks', field: 'datanet_challenge_window_blocks', kind: 'blocks', about: 'blocks from acceptance to the release of a contribution stake' },
  { param: 'datanet_curation_period_blocks', field: 'datanet_curation_period_blocks', kind: 'blocks', about: 'blocks a contribution may stay pending' },
  { param: 'model_min_price_per1k', field: 'model_min_price_per_1k', kind: 'amount', about: 'lowest price per 1,000 tokens an adapter may set' },
  { param: 'model_max_price_per1k', field: 'model_max_price_per_1k', kind: 'amount', about: 'highest price per 1,000 tokens an adapter may set' },
  { param: 'base_price_in_per1k', field: 'base_price_in_per_1k', kind: 'amount', about: 'price per 1,000 prompt tokens of a base model without adapter' },
  { param: 'base_price_out_per1k', field: 'base_price_out_per_1k', kind: 'amount', about: 'price per 1,000 completion tokens of a base model without adapter' },
];

export const FEE_PARTS = ['contributors_bps', 'adapter_owner_bps', 'base_model_owner_bps', 'stakers_bps', 'treasury_bps'] as const;
const FEE_WORDS = ['contributors', 'adapter owner', 'base model owner', 'stakers', 'treasury'];

const pct = (bps: number) => `${(bps / 100).toFixed(2).replace(/\.?0+$/, '')}%`;

/** A parameter value (from /v1/params, or a change's value) in words. */
export function valueText(kind: ParamKind, v: unknown): string {
  switch (kind) {
    case 'amount':
      return `${formatOpen(String(v))} OPEN`;
    case 'count':
      return String(v);
    case 'blocks':
      return `${v} blocks`;
    case 'bps':
      return pct(Number(v));
    case 'bool':
      return v ? 'yes' : 'no';
    case 'fee_split': {
      const s = v as Record<string, number>;
      return FEE_PARTS.map((p, i) => `${FEE_WORDS[i]} ${pct(s[p])}`).join(', ');
    }
  }
}

const int = (text: string, what: string, max: number): number => {
  const t = text.trim().replaceAll('_', '');
  if (!/^\d+$/.test(t) || Number(t) > max) throw new Error(`${what}: "${text}" is not a whole number from 0 to ${max}`);
  return Number(t);
};
/** A percentage with up to two decimals as basis points. */
const percentBps = (text: string, what: string): number => {
  const t = text.trim().replace(/%$/, '');
  if (!/^\d+(\.\d{1,2})?$/.test(t) || Number(t) > 100) throw new Error(`${what}: "${text}" is not a percentage from 0 to 100 (at most two decimals)`);
  return Math.round(Number(t) * 100);
};

/**
 * The `ParamChange` setting `param` to the value written in `text`:
 * OPEN amounts as decimals, counts and blocks as whole numbers, shares as
 * percentages, yes/no, and the fee split as five percentages summing to 100.
 */
export function buildChange(param: ParamChange['param'], text: string): ParamChange {
  const p = PARAMS.find((x) => x.param === param);
  if (!p) throw new Error(`unknown parameter ${param}`);
  switch (p.kind) {
    case 'amount':
      return { param, value: parseOpen(text).toString() } as ParamChange;
    case 'count':
      return { param, value: int(text, param, 0xffff_ffff) } as ParamChange;
    case 'blocks':
      return { param, value: int(text, param, Number.MAX_SAFE_INTEGER) } as ParamChange;
    case 'bps':
      return { param, value: percentBps(text, param) } as ParamChange;
    case 'bool': {
      const t = text.trim().toLowerCase();
      if (!['yes', 'no', 'true', 'false'].includes(t)) throw new Error(`${param}: write yes or no`);
      return { param: 'gov_deposit_burn_on_fail', value: t === 'yes' || t === 'true' };
    }
    case 'fee_split': {
      const parts = text.split(',');
      if (parts.length !== 5) throw new Error('fee_split: write five percentages (contributors, adapter owner, base model owner, stakers, treasury) separated by commas');
      const bps = parts.map((x, i) => percentBps(x, `fee_split ${FEE_WORDS[i]}`));
      const sum = bps.reduce((a, b) => a + b, 0);
      if (sum !== 10_000) throw new Error(`fee_split: the five shares sum to ${pct(sum)}, not 100%`);
      const value = Object.fromEntries(FEE_PARTS.map((k, i) => [k, bps[i]])) as Extract<ParamChange, { param: 'fee_split' }>['value'];
      return { param: 'fee_split', value };
    }
  }
}

/** A proposal status (`ProposalStatus`, snake_case) in words, as the ledger's Display writes it. */
export function statusText(status: string): string {
  const words: Record<string, string> = {
    deposit_period: 'in its deposit period',
    voting: 'voting',
    passed: 'passed (timelocked)',
    executed: 'executed',
    rejected: 'rejected',
    no_quorum: 'failed (no quorum)',
    vetoed: 'vetoed',
    expired: 'expired (deposit not reached)',
    execution_failed: 'failed at execution',
  };
  return words[status] ?? status;
}

export interface TallyIn {
  yes: bigint;
  no: bigint;
  abstain: bigint;
  veto: bigint;
  total: bigint;
}

const atLeast = (a: bigint, bps: number, b: bigint) => a * 10_000n >= b * BigInt(bps);
const above = (a: bigint, bps: number, b: bigint) => a * 10_000n > b * BigInt(bps);

/** The outcome `decide` gives a tally: `passed`, `rejected`, `no_quorum` or `vetoed`. */
export function decide(t: TallyIn, p: { gov_quorum_bps: number; gov_threshold_bps: number; gov_veto_bps: number }): string {
  const voted = t.yes + t.no + t.abstain + t.veto;
  if (t.total === 0n || voted === 0n || !atLeast(voted, p.gov_quorum_bps, t.total)) return 'no_quorum';
  if (above(t.veto, p.gov_veto_bps, voted)) return 'vetoed';
  const decisive = t.yes + t.no + t.veto;
  return decisive !== 0n && above(t.yes, p.gov_threshold_bps, decisive) ? 'passed' : 'rejected';
}
