// Ledger steps for the browser tests, done the way the app does them but
// from the test process: a key from a `trib keys` file of the node's home,
// JSON reads, and transactions encoded and signed with the app's own
// encoder (src/lib/tx.ts), submitted and followed to their block.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inject } from 'vitest';
import { fromHex, toHex } from '../../src/lib/bytes';
import { keyFromSeed, type KeyPair } from '../../src/lib/keys';
import { signTransaction, type Action } from '../../src/lib/tx';

export async function json(url: string, init?: RequestInit) {
  const res = await fetch(url, init);
  const body = await res.json();
  if (!res.ok) throw new Error(`${url}: ${JSON.stringify(body)}`);
  return body;
}

/** The key of a plain `trib keys` file in the node's home (`producer`). */
export function homeKey(name: string): KeyPair {
  const file = JSON.parse(readFileSync(join(inject('home'), 'keys', `${name}.json`), 'utf8'));
  return keyFromSeed(fromHex(file.secret.seed));
}

/** Signs `action` from `key` with the next nonce and the minimum fee, submits it, waits for its block. */
export async function submit(baseUrl: string, key: KeyPair, action: Action): Promise<{ hash: string; height: number }> {
  const status = await json(`${baseUrl}/v1/status`);
  const account = await json(`${baseUrl}/v1/accounts/${key.address}`);
  const params = await json(`${baseUrl}/v1/params`);
  const signed = signTransaction(
    { chain_id: status.chain_id, sender: toHex(key.publicKey), nonce: account.next_nonce, fee: params.min_fee, action },
    key,
  );
  const res = await json(`${baseUrl}/v1/tx`, { method: 'POST', body: toHex(signed.encoded) });
  for (let i = 0; ; i++) {
    const v = await json(`${baseUrl}/v1/tx/${res.hash}`);
    if (v.status === 'committed') return { hash: res.hash, height: v.height };
    if (i > 120) throw new Error(`${action.type} ${res.hash} not committed in 30 s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
