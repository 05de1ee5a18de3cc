// State proofs checked in the browser, as crates/ledger/src/proof.rs
// `verify_proof` checks them: the JMT (jmt 0.12, SHA-256 node hashing)
// sparse Merkle proof of one state entry, or of its absence, against a
// block's state root.
//
// - the key: its text (`account/trib…`, `datanet_version/<id>/<n>`…) is
//   encoded as borsh of `StateKey` (one-byte variant tag, then the fields:
//   addresses 20 bytes, ids 32 bytes, u64/u32 little-endian), and its JMT
//   key hash is `Hash::domain("tributary state key v1", [those bytes])`;
// - the leaf: sha256("JMT::LeafNode" ‖ key hash ‖ sha256(value bytes));
// - each step up: sha256("JMT::IntrnalNode" ‖ left ‖ right), the siblings
//   listed from the leaf upwards, the side given by the key hash's bits
//   (most significant first) read from bit `siblings − 1` down to bit 0;
//   an empty subtree hashes to "SPARSE_MERKLE_PLACEHOLDER_HASH__".
//
// The value bytes are the entry's canonical borsh encoding, which
// GET /v1/proofs returns as `value_bytes` (hex) next to its decoding.

import { sha256 } from '@noble/hashes/sha2.js';
import { BorshWriter } from './borsh';
import { concat, fromHex, hashDomain, toHex, utf8 } from './bytes';
import { parseAddress } from './keys';

type Field = 'address' | 'id' | 'u64' | 'u32';

/** Every `StateKey` variant in declaration order (its borsh tag), with its text name and fields. */
export const STATE_KEYS: [name: string, fields: Field[]][] = [
  ['account', ['address']],
  ['params', []],
  ['supply', []],
  ['proposal', ['u64']],
  ['next_proposal_id', []],
  ['active_proposals', []],
  ['voting_power', ['address']],
  ['unbonding_queue', ['u64']],
  ['datanet', ['id']],
  ['contribution', ['id']],
  ['datanet_version', ['id', 'u32']],
  ['datanet_access', ['id', 'address']],
  ['reputation', ['id', 'address']],
  ['datanet_contributors', ['id']],
  ['curation_deadlines', ['u64']],
  ['stake_releases', ['u64']],
  ['base_model', ['id']],
  ['adapter', ['id']],
  ['allowance', ['address', 'address']],
  ['receipt', ['id']],
  ['payout_count', ['address']],
  ['payout_index', ['address', 'u64']],
  ['staking_reward_pool', []],
  ['staker_rewards', ['address']],
];

/** borsh of the `StateKey` written as `key` (`kind[/arg[/arg]]`). */
export function stateKeyBytes(key: string): Uint8Array {
  const [kind, ...args] = key.split('/');
  const tag = STATE_KEYS.findIndex(([name]) => name === kind);
  if (tag < 0) throw new Error(`"${key.slice(0, 80)}" is not a state key: unknown kind "${kind}"`);
  const fields = STATE_KEYS[tag][1];
  if (args.length !== fields.length) {
    throw new Error(`state key "${key.slice(0, 80)}": ${kind} takes ${fields.length} part(s) after the kind, got ${args.length}`);
  }
  const w = new BorshWriter().u8(tag);
  fields.forEach((f, i) => {
    const a = args[i];
    if (f === 'address') w.fixed(parseAddress(a), 20, 'address');
    else if (f === 'id') w.fixed(fromHex(a, 32, 'id'), 32, 'id');
    else {
      if (!/^\d+$/.test(a)) throw new Error(`state key "${key.slice(0, 80)}": "${a}" is not a number`);
      if (f === 'u64') w.u64(a);
      else w.u32(Number(a));
    }
  });
  return w.bytes();
}

/** The JMT key hash of a state key. */
export function keyHash(key: string): Uint8Array {
  return hashDomain('tributary state key v1', [stateKeyBytes(key)]);
}

type Bytes32 = number[];
/** A sibling as serde writes jmt's `SparseMerkleNode`. */
export type SiblingJson =
  | 'Null'
  | { Internal: { left_child: Bytes32; right_child: Bytes32 } }
  | { Leaf: { key_hash: Bytes32; value_hash: Bytes32 } };

/** jmt's `SparseMerkleProof` as JSON. */
export interface SparseMerkleProofJson {
  leaf: { key_hash: Bytes32; value_hash: Bytes32 } | null;
  siblings: SiblingJson[];
}

const PLACEHOLDER = utf8('SPARSE_MERKLE_PLACEHOLDER_HASH__');
const LEAF = utf8('JMT::LeafNode');
const INTERNAL = utf8('JMT::IntrnalNode');

const bytes32 = (a: Bytes32, what: string): Uint8Array => {
  if (!Array.isArray(a) || a.length !== 32 || a.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) {
    throw new Error(`the proof's ${what} is not 32 bytes`);
  }
  return Uint8Array.from(a);
};
const leafHash = (k: Uint8Array, v: Uint8Array) => sha256(concat([LEAF, k, v]));
const internalHash = (l: Uint8Array, r: Uint8Array) => sha256(concat([INTERNAL, l, r]));
const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

function siblingHash(s: SiblingJson, i: number): Uint8Array {
  if (s === 'Null') return PLACEHOLDER;
  if ('Internal' in s) return internalHash(bytes32(s.Internal.left_child, `sibling ${i}`), bytes32(s.Internal.right_child, `sibling ${i}`));
  if ('Leaf' in s) return leafHash(bytes32(s.Leaf.key_hash, `sibling ${i}`), bytes32(s.Leaf.value_hash, `sibling ${i}`));
  throw new Error(`the proof's sibling ${i} is neither Null, Internal nor Leaf`);
}

/** Bit `i` of a 32-byte hash, most significant bit of byte 0 first. */
const bit = (h: Uint8Array, i: number) => ((h[i >> 3] >> (7 - (i & 7))) & 1) === 1;

/** Leading bits two hashes share. */
function commonPrefixBits(a: Uint8Array, b: Uint8Array): number {
  let n = 0;
  while (n < 256 && bit(a, n) === bit(b, n)) n++;
  return n;
}

/** What a checked proof showed. */
export type ProofOutcome = { kind: 'inclusion'; valueHash: string } | { kind: 'absence' };

/**
 * Checks that `value` (canonical bytes; null to check absence) is what
 * state key `key` holds under `stateRoot` (32 bytes, hex). Returns what it
 * proved, or throws a sentence naming the first check that failed.
 */
export function verifyStateProof(
  stateRoot: string,
  key: string,
  value: Uint8Array | null,
  proof: SparseMerkleProofJson,
): ProofOutcome {
  const root = fromHex(stateRoot, 32, 'state root');
  const k = keyHash(key);
  if (proof.siblings.length > 256) throw new Error(`the proof has ${proof.siblings.length} siblings; at most 256 fit a 256-bit key`);
  let outcome: ProofOutcome;
  const leaf = proof.leaf ? { key: bytes32(proof.leaf.key_hash, 'leaf key hash'), value: bytes32(proof.leaf.value_hash, 'leaf value hash') } : null;
  if (value) {
    if (!leaf) throw new Error('the node claims a value but its proof shows the key absent');
    if (!equal(leaf.key, k)) throw new Error(`the proof's leaf is for key hash ${toHex(leaf.key)}, not ${key} (${toHex(k)})`);
    const vh = sha256(value);
    if (!equal(vh, leaf.value)) throw new Error(`the value bytes hash to ${toHex(vh)}, the proof's leaf holds ${toHex(leaf.value)}`);
    outcome = { kind: 'inclusion', valueHash: toHex(vh) };
  } else {
    if (leaf) {
      if (equal(leaf.key, k)) throw new Error(`the node claims ${key} is absent but its proof holds a value for it`);
      if (commonPrefixBits(k, leaf.key) < proof.siblings.length) {
        throw new Error(`the proof's leaf is not in the subtree where ${key} would be: it does not show absence`);
      }
    }
    outcome = { kind: 'absence' };
  }
  let h = leaf ? leafHash(leaf.key, leaf.value) : PLACEHOLDER;
  const n = proof.siblings.length;
  proof.siblings.forEach((s, i) => {
    const sib = siblingHash(s, i);
    h = bit(k, n - 1 - i) ? internalHash(sib, h) : internalHash(h, sib);
  });
  if (!equal(h, root)) throw new Error(`the proof leads to root ${toHex(h)}, not the block's state root ${stateRoot}`);
  return outcome;
}
