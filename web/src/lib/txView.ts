// What a transaction does, as label/value lines for the confirmation step
// and the explorer: amounts in OPEN, addresses and hashes whole.
import { formatOpen } from './amount';
import type { Action } from './tx';

const AMOUNT_FIELDS = new Set([
  'amount',
  'deposit',
  'allowance',
  'stake_per_contribution',
  'price_in_per_1k',
  'price_out_per_1k',
]);

const ACTION_NAMES: Record<string, string> = {
  transfer: 'Transfer OPEN',
  stake: 'Stake OPEN (receive gOPEN 1:1)',
  unstake: 'Unstake gOPEN (OPEN returns after the unbonding period)',
  delegate: 'Delegate voting power',
  propose: 'Propose a parameter change',
  deposit: 'Deposit on a proposal',
  vote: 'Vote on a proposal',
  create_datanet: 'Create a datanet',
  contribute: 'Contribute to a datanet',
  curate: 'Curate a contribution',
  publish_version: 'Publish a datanet version',
  grant_access: 'Grant datanet access',
  revoke_access: 'Revoke datanet access',
  register_base_model: 'Register a base model',
  register_adapter: 'Register an adapter',
  set_adapter_price: 'Set an adapter price',
  approve_operator: 'Approve a serving operator',
  settle_inference: 'Settle an inference',
  claim_staking_rewards: 'Claim staking rewards',
};

export function actionName(type: string): string {
  return ACTION_NAMES[type] ?? type;
}

function label(key: string): string {
  const s = key.replaceAll('_', ' ');
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function value(key: string, v: unknown): string {
  if (AMOUNT_FIELDS.has(key) && (typeof v === 'string' || typeof v === 'number')) return `${formatOpen(String(v))} OPEN`;
  if (typeof v === 'string') return v || '(empty)';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return JSON.stringify(v);
}

/** The action's fields as lines (its type excluded). */
export function actionLines(a: Action | { type: string; [k: string]: unknown }): { label: string; value: string }[] {
  return Object.entries(a)
    .filter(([k]) => k !== 'type')
    .map(([k, v]) => ({ label: label(k), value: value(k, v) }));
}
