// The browser's encoders against the vectors the Rust side writes
// (crates/web/tests/vectors.rs → web/tests/vectors/tx.json): canonical
// bytes, signing hash, signature, transaction id and the signed-request
// message and signature must be byte-identical.
import { describe, expect, it } from 'vitest';
import vectors from '../../tests/vectors/tx.json';
import { fromHex, toHex } from './bytes';
import { addressOf, keyFromSeed, verify } from './keys';
import { signedMessage, signRequest } from './signedRequest';
import { ACTION_TAGS, encodeTransaction, signingHash, signTransaction, type Transaction } from './tx';

const key = keyFromSeed(fromHex(vectors.key.seed));

describe('keys', () => {
  it('derive the public key and address the Rust side derives', () => {
    expect(toHex(key.publicKey)).toBe(vectors.key.public_key);
    expect(key.address).toBe(vectors.key.address);
    expect(addressOf(key.publicKey)).toBe(vectors.key.address);
  });
});

describe('transactions', () => {
  it('cover every action variant', () => {
    const names = new Set(vectors.transactions.map((t) => t.name));
    expect([...names].sort()).toEqual(Object.keys(ACTION_TAGS).sort());
  });

  for (const [i, v] of vectors.transactions.entries()) {
    it(`encode, hash and sign ${v.name} #${i} byte for byte`, () => {
      const tx = v.tx as unknown as Transaction;
      expect(toHex(encodeTransaction(tx))).toBe(v.signing_bytes);
      expect(toHex(signingHash(tx))).toBe(v.signing_hash);
      const signed = signTransaction(tx, key);
      expect(signed.signature).toBe(v.signature);
      expect(signed.hash).toBe(v.hash);
      expect(toHex(signed.encoded)).toBe(v.signed);
    });
  }

  it('change when any field changes', () => {
    const tx = vectors.transactions[0].tx as unknown as Transaction;
    const base = toHex(signingHash(tx));
    expect(toHex(signingHash({ ...tx, nonce: tx.nonce + 1 }))).not.toBe(base);
    expect(toHex(signingHash({ ...tx, chain_id: 'other' }))).not.toBe(base);
    expect(toHex(signingHash({ ...tx, fee: '1' }))).not.toBe(base);
  });

  it('refuse fields that do not fit, in words', () => {
    const tx = vectors.transactions[0].tx as unknown as Transaction;
    expect(() => encodeTransaction({ ...tx, action: { type: 'transfer', to: 'trib12', amount: '1' } })).toThrow(
      /invalid address/,
    );
    expect(() => encodeTransaction({ ...tx, fee: (1n << 128n).toString() })).toThrow(/does not fit a u128/);
    expect(() => signTransaction({ ...tx, sender: '00'.repeat(32) }, key)).toThrow(/another sender/);
  });
});

describe('signed requests', () => {
  for (const r of vectors.signed_requests) {
    it(`sign ${r.method} ${r.path_and_query} as the node verifies it`, () => {
      const body = fromHex(r.body_hex);
      const msg = signedMessage(r.method, r.path_and_query, r.timestamp, r.nonce, body);
      expect(new TextDecoder().decode(msg)).toBe(r.message);
      const headers = signRequest(key, r.method, r.path_and_query, body, r.timestamp, r.nonce);
      expect(headers['x-trib-signature']).toBe(r.signature);
      expect(headers['x-trib-address']).toBe(vectors.key.address);
      expect(headers['x-trib-public-key']).toBe(vectors.key.public_key);
      expect(verify(key.publicKey, msg, fromHex(r.signature))).toBe(true);
    });
  }
});

describe('integers past 2^53', () => {
  it('are refused as JSON numbers instead of signed wrongly', () => {
    const tx = vectors.transactions[0].tx as unknown as Transaction;
    expect(() =>
      encodeTransaction({ ...tx, action: { type: 'vote', proposal: 2 ** 53 + 2, choice: 'yes' } }),
    ).toThrow(/not an exact integer/);
  });
});

describe('parameter changes', () => {
  it('cover every ParamChange variant', () => {
    const params = new Set(
      vectors.transactions.map((t) => (t.tx.action as { change?: { param: string } }).change?.param).filter(Boolean),
    );
    expect(params.size).toBe(20);
  });
});
