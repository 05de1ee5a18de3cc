// Building, submitting and following a transaction for the active key:
// the chain id from /v1/status, the next nonce from /v1/accounts (pending
// transactions counted), the fee from /v1/params (`min_fee`), the signed
// canonical bytes as hex to POST /v1/tx, then /v1/tx/{hash} until a block
// includes it.
import { getJson, request, ApiError } from './api';
import { toHex } from './bytes';
import type { KeyPair } from './keys';
import { signTransaction, type Action, type Signed, type Transaction } from './tx';
import type { Account, Status, TxView } from './wire';

export interface Params {
  min_fee: string;
  [k: string]: unknown;
}

/** The unsigned transaction for `action` from `key`, with the minimum fee. */
export async function prepare(key: KeyPair, action: Action): Promise<Transaction> {
  const [status, account, params] = await Promise.all([
    getJson<Status>('/v1/status'),
    getJson<Account>(`/v1/accounts/${key.address}`),
    getJson<Params>('/v1/params'),
  ]);
  return {
    chain_id: status.chain_id,
    sender: toHex(key.publicKey),
    nonce: account.next_nonce,
    fee: params.min_fee,
    action,
  };
}

/** Signs and submits; the node's refusal comes back as an ApiError in words. */
export async function signAndSubmit(tx: Transaction, key: KeyPair): Promise<Signed> {
  const signed = signTransaction(tx, key);
  const res = await request('/v1/tx', {
    method: 'POST',
    headers: { 'content-type': 'text/plain' },
    body: toHex(signed.encoded),
  });
  const { hash } = (await res.json()) as { hash: string };
  if (hash !== signed.hash) {
    throw new Error(`the node reports transaction ${hash}, but this page signed ${signed.hash}`);
  }
  return signed;
}

/** Polls until the transaction is in a block; returns its height. */
export async function waitForBlock(hash: string, timeoutMs = 60_000): Promise<TxView> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      const v = await getJson<TxView>(`/v1/tx/${hash}`);
      if (v.status === 'committed') return v;
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
      throw new Error(`the node no longer knows transaction ${hash}: it was left out of the block (${e.message})`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`transaction ${hash} is still pending after ${timeoutMs / 1000} s`);
}
