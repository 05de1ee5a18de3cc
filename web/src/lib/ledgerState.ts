// Reading one ledger state entry (a contribution's votes, an access grant, a
// reputation record…) through GET /v1/proofs, the one route that serves any
// state key: the answer carries the decoded value (or null when the entry
// does not exist) with the Merkle proof against a block's state root.

import { getJson } from './api';

/** The JSON of GET /v1/proofs (crates/ledger/src/proof.rs `StateProof`). */
export interface StateProofJson<V = unknown> {
  height: number;
  state_root: string;
  key: string;
  value: { kind: string; value: V } | null;
  proof: unknown;
}

/** GET /v1/proofs for `key` (for example `contribution/<id>`), at the head or at `height`. */
export function getProof<V = unknown>(key: string, height?: number): Promise<StateProofJson<V>> {
  const q = new URLSearchParams({ key });
  if (height !== undefined) q.set('height', String(height));
  return getJson<StateProofJson<V>>(`/v1/proofs?${q}`);
}

/** The value of one state entry at the head, or null when there is none. */
export async function readState<V>(key: string): Promise<V | null> {
  return (await getProof<V>(key)).value?.value ?? null;
}
