// Transactions signed in the browser with the exact canonical bytes the
// node verifies (crates/ledger/src/tx.rs). A transaction is described by
// the same JSON the API returns for it (serde's shapes: snake_case action
// `type` tags, amounts as base-unit strings, hashes and keys as hex); the
// encoder writes its borsh bytes; the signing hash is
// Hash::domain("tributary transaction v1", [borsh bytes]); the signature is
// ed25519 over that hash; the transaction id is the same hash. The Rust
// test `web_vectors` writes web/tests/vectors/tx.json and tx.test.ts checks
// every variant here against it byte for byte.
import { BorshWriter } from './borsh';
import { concat, fromHex, hashDomain, toHex } from './bytes';
import { parseAddress, sign, type KeyPair } from './keys';

const TX_DOMAIN = 'tributary transaction v1';

type Amount = string; // base units, decimal
type Hex = string;
type DatanetVersion = [Hex, number];

export type ParamChange =
  | { param: 'max_block_txs' | 'max_tx_bytes'; value: number }
  | {
      param:
        | 'min_fee'
        | 'gov_min_deposit'
        | 'model_min_price_per1k'
        | 'model_max_price_per1k'
        | 'base_price_in_per1k'
        | 'base_price_out_per1k';
      value: Amount;
    }
  | {
      param:
        | 'unbonding_period_blocks'
        | 'gov_deposit_period_blocks'
        | 'gov_voting_period_blocks'
        | 'gov_timelock_blocks'
        | 'datanet_challenge_window_blocks'
        | 'datanet_curation_period_blocks';
      value: number;
    }
  | { param: 'gov_quorum_bps' | 'gov_threshold_bps' | 'gov_veto_bps' | 'datanet_slash_bps'; value: number }
  | { param: 'gov_deposit_burn_on_fail'; value: boolean }
  | {
      param: 'fee_split';
      value: {
        contributors_bps: number;
        adapter_owner_bps: number;
        base_model_owner_bps: number;
        stakers_bps: number;
        treasury_bps: number;
      };
    };

export type Action =
  | { type: 'transfer'; to: string; amount: Amount }
  | { type: 'stake'; amount: Amount }
  | { type: 'unstake'; amount: Amount }
  | { type: 'delegate'; to: string }
  | { type: 'propose'; title: string; description: string; change: ParamChange; deposit: Amount }
  | { type: 'deposit'; proposal: number; amount: Amount }
  | { type: 'vote'; proposal: number; choice: 'yes' | 'no' | 'abstain' | 'veto' }
  | {
      type: 'create_datanet';
      name: string;
      metadata_hash: Hex;
      data_type: 'text' | 'instruction' | 'chat';
      curation: { mode: 'owner_approval' } | { mode: 'validator_vote'; quorum_bps: number };
      stake_per_contribution: Amount;
      visibility: 'public' | 'permissioned';
    }
  | { type: 'contribute'; datanet: Hex; contribution: Hex; rows_root: Hex; rows: number; bytes: number }
  | { type: 'curate'; contribution: Hex; accept: boolean; reason: string }
  | { type: 'publish_version'; datanet: Hex; root: Hex; rows: number; contributions: Hex[] }
  | { type: 'grant_access'; datanet: Hex; to: string }
  | { type: 'revoke_access'; datanet: Hex; to: string }
  | { type: 'register_base_model'; model: Hex; name: string; architecture: string; licence: string }
  | {
      type: 'register_adapter';
      adapter: Hex;
      base: Hex;
      name: string;
      datanets: DatanetVersion[];
      config_hash: Hex;
      metrics_hash: Hex;
      price_in_per_1k: Amount;
      price_out_per_1k: Amount;
    }
  | { type: 'set_adapter_price'; adapter: Hex; price_in_per_1k: Amount; price_out_per_1k: Amount }
  | { type: 'approve_operator'; operator: string; allowance: Amount }
  | {
      type: 'settle_inference';
      receipt: Hex;
      payer: string;
      adapter: Hex | null;
      base: Hex;
      prompt_tokens: number;
      completion_tokens: number;
      weights: [Hex, number][];
      method: string;
      evidence_hash: Hex;
      datanets: DatanetVersion[];
    }
  | { type: 'claim_staking_rewards' };

/** An unsigned transaction, in the API's JSON shape. */
export interface Transaction {
  chain_id: string;
  /** The sender's public key, hex. */
  sender: Hex;
  nonce: number;
  fee: Amount;
  action: Action;
}

/** The borsh tag of each action, in the Rust enum's declaration order. */
export const ACTION_TAGS: Record<Action['type'], number> = {
  transfer: 0,
  stake: 1,
  unstake: 2,
  delegate: 3,
  propose: 4,
  deposit: 5,
  vote: 6,
  create_datanet: 7,
  contribute: 8,
  curate: 9,
  publish_version: 10,
  grant_access: 11,
  revoke_access: 12,
  register_base_model: 13,
  register_adapter: 14,
  set_adapter_price: 15,
  approve_operator: 16,
  settle_inference: 17,
  claim_staking_rewards: 18,
};

const PARAM_TAGS: Record<ParamChange['param'], number> = {
  max_block_txs: 0,
  max_tx_bytes: 1,
  min_fee: 2,
  unbonding_period_blocks: 3,
  gov_min_deposit: 4,
  gov_deposit_period_blocks: 5,
  gov_voting_period_blocks: 6,
  gov_quorum_bps: 7,
  gov_threshold_bps: 8,
  gov_veto_bps: 9,
  gov_timelock_blocks: 10,
  gov_deposit_burn_on_fail: 11,
  fee_split: 12,
  datanet_slash_bps: 13,
  datanet_challenge_window_blocks: 14,
  datanet_curation_period_blocks: 15,
  model_min_price_per1k: 16,
  model_max_price_per1k: 17,
  base_price_in_per1k: 18,
  base_price_out_per1k: 19,
};

const VOTE_TAGS = { yes: 0, no: 1, abstain: 2, veto: 3 } as const;
const DATA_TYPE_TAGS = { text: 0, instruction: 1, chat: 2 } as const;
const VISIBILITY_TAGS = { public: 0, permissioned: 1 } as const;

function hash32(w: BorshWriter, hex: Hex, what: string) {
  w.fixed(fromHex(hex, 32, what), 32, what);
}
function address(w: BorshWriter, text: string) {
  w.fixed(parseAddress(text), 20, 'address');
}
function versions(w: BorshWriter, v: DatanetVersion[]) {
  w.vec(v, (w, [id, n]) => {
    hash32(w, id, 'datanet id');
    w.u32(n);
  });
}

function paramChange(w: BorshWriter, c: ParamChange) {
  const tag = PARAM_TAGS[c.param];
  if (tag === undefined) throw new Error(`unknown parameter ${JSON.stringify(c.param)}`);
  w.u8(tag);
  switch (c.param) {
    case 'max_block_txs':
    case 'max_tx_bytes':
      w.u32(c.value);
      break;
    case 'min_fee':
    case 'gov_min_deposit':
    case 'model_min_price_per1k':
    case 'model_max_price_per1k':
    case 'base_price_in_per1k':
    case 'base_price_out_per1k':
      w.u128(c.value);
      break;
    case 'gov_quorum_bps':
    case 'gov_threshold_bps':
    case 'gov_veto_bps':
    case 'datanet_slash_bps':
      w.u16(c.value);
      break;
    case 'gov_deposit_burn_on_fail':
      w.bool(c.value);
      break;
    case 'fee_split':
      w.u16(c.value.contributors_bps)
        .u16(c.value.adapter_owner_bps)
        .u16(c.value.base_model_owner_bps)
        .u16(c.value.stakers_bps)
        .u16(c.value.treasury_bps);
      break;
    default:
      w.u64(c.value);
  }
}

function action(w: BorshWriter, a: Action) {
  const tag = ACTION_TAGS[a.type];
  if (tag === undefined) throw new Error(`unknown action ${JSON.stringify(a.type)}`);
  w.u8(tag);
  switch (a.type) {
    case 'transfer':
      address(w, a.to);
      w.u128(a.amount);
      break;
    case 'stake':
    case 'unstake':
      w.u128(a.amount);
      break;
    case 'delegate':
      address(w, a.to);
      break;
    case 'propose':
      w.string(a.title).string(a.description);
      paramChange(w, a.change);
      w.u128(a.deposit);
      break;
    case 'deposit':
      w.u64(a.proposal).u128(a.amount);
      break;
    case 'vote':
      w.u64(a.proposal).u8(VOTE_TAGS[a.choice]);
      break;
    case 'create_datanet':
      w.string(a.name);
      hash32(w, a.metadata_hash, 'metadata hash');
      w.u8(DATA_TYPE_TAGS[a.data_type]);
      if (a.curation.mode === 'owner_approval') w.u8(0);
      else w.u8(1).u16(a.curation.quorum_bps);
      w.u128(a.stake_per_contribution).u8(VISIBILITY_TAGS[a.visibility]);
      break;
    case 'contribute':
      hash32(w, a.datanet, 'datanet id');
      hash32(w, a.contribution, 'contribution id');
      hash32(w, a.rows_root, 'rows root');
      w.u32(a.rows).u64(a.bytes);
      break;
    case 'curate':
      hash32(w, a.contribution, 'contribution id');
      w.bool(a.accept).string(a.reason);
      break;
    case 'publish_version':
      hash32(w, a.datanet, 'datanet id');
      hash32(w, a.root, 'root');
      w.u64(a.rows).vec(a.contributions, (w, c) => hash32(w, c, 'contribution id'));
      break;
    case 'grant_access':
    case 'revoke_access':
      hash32(w, a.datanet, 'datanet id');
      address(w, a.to);
      break;
    case 'register_base_model':
      hash32(w, a.model, 'model id');
      w.string(a.name).string(a.architecture).string(a.licence);
      break;
    case 'register_adapter':
      hash32(w, a.adapter, 'adapter id');
      hash32(w, a.base, 'model id');
      w.string(a.name);
      versions(w, a.datanets);
      hash32(w, a.config_hash, 'config hash');
      hash32(w, a.metrics_hash, 'metrics hash');
      w.u128(a.price_in_per_1k).u128(a.price_out_per_1k);
      break;
    case 'set_adapter_price':
      hash32(w, a.adapter, 'adapter id');
      w.u128(a.price_in_per_1k).u128(a.price_out_per_1k);
      break;
    case 'approve_operator':
      address(w, a.operator);
      w.u128(a.allowance);
      break;
    case 'settle_inference':
      hash32(w, a.receipt, 'receipt id');
      address(w, a.payer);
      w.option(a.adapter, (w, h) => hash32(w, h, 'adapter id'));
      hash32(w, a.base, 'model id');
      w.u32(a.prompt_tokens).u32(a.completion_tokens);
      w.vec(a.weights, (w, [c, weight]) => {
        hash32(w, c, 'contribution id');
        w.u64(weight);
      });
      w.string(a.method);
      hash32(w, a.evidence_hash, 'evidence hash');
      versions(w, a.datanets);
      break;
    case 'claim_staking_rewards':
      break;
  }
}

/** The canonical borsh bytes of an unsigned transaction. */
export function encodeTransaction(tx: Transaction): Uint8Array {
  const w = new BorshWriter();
  w.string(tx.chain_id);
  hash32(w, tx.sender, 'public key');
  w.u64(tx.nonce).u128(tx.fee);
  action(w, tx.action);
  return w.bytes();
}

/** The hash the sender signs, which is also the transaction's id. */
export function signingHash(tx: Transaction): Uint8Array {
  return hashDomain(TX_DOMAIN, [encodeTransaction(tx)]);
}

/** A signed transaction: its id and the canonical bytes POST /v1/tx takes. */
export interface Signed {
  hash: Hex;
  signature: Hex;
  /** Canonical encoding of the signed transaction (tx bytes + 64-byte signature). */
  encoded: Uint8Array;
}

export function signTransaction(tx: Transaction, key: KeyPair): Signed {
  if (toHex(key.publicKey) !== tx.sender.toLowerCase()) {
    throw new Error('the transaction names another sender than the unlocked key');
  }
  const hash = signingHash(tx);
  const signature = sign(key, hash);
  return { hash: toHex(hash), signature: toHex(signature), encoded: concat([encodeTransaction(tx), signature]) };
}
