// The TypeScript state-proof verifier against proofs a real Rust ledger
// made (web/tests/vectors/proofs.json, written by crates/web/tests/vectors.rs):
// every StateKey kind hashes as the Rust side hashes it, every proof
// verifies, and any tampering is refused with a reason.
import { describe, expect, it } from 'vitest';
import vectors from '../../tests/vectors/proofs.json';
import { fromHex, toHex } from './bytes';
import { keyHash, stateKeyBytes, STATE_KEYS, verifyStateProof, type SparseMerkleProofJson } from './proof';

interface ProofVector {
  key: string;
  state_root: string;
  value_bytes: string | null;
  proof: SparseMerkleProofJson;
}
const proofs = vectors.proofs as unknown as ProofVector[];

describe('state proofs', () => {
  it('encodes and hashes every kind of state key as the ledger does', () => {
    expect(vectors.keys.length).toBe(STATE_KEYS.length);
    for (const k of vectors.keys) {
      expect(toHex(stateKeyBytes(k.key)), k.key).toBe(k.bytes);
      expect(toHex(keyHash(k.key)), k.key).toBe(k.key_hash);
    }
  });

  it('verifies the ledger proofs of present and absent entries', () => {
    const kinds = proofs.map((p) => {
      const value = p.value_bytes === null ? null : fromHex(p.value_bytes);
      return verifyStateProof(p.state_root, p.key, value, p.proof).kind;
    });
    expect(kinds).toContain('inclusion');
    expect(kinds).toContain('absence');
    expect(kinds.filter((k) => k === 'absence').length).toBe(proofs.filter((p) => p.value_bytes === null).length);
  });

  it('refuses a changed value, root, key or path', () => {
    const p = proofs.find((x) => x.value_bytes !== null)!;
    const value = fromHex(p.value_bytes!);
    const edited = value.slice();
    edited[edited.length - 1] ^= 1;
    expect(() => verifyStateProof(p.state_root, p.key, edited, p.proof)).toThrow(/value bytes hash to/);
    const otherRoot = (p.state_root[0] === '0' ? '1' : '0') + p.state_root.slice(1);
    expect(() => verifyStateProof(otherRoot, p.key, value, p.proof)).toThrow(/not the block's state root/);
    const absent = proofs.find((x) => x.value_bytes === null)!;
    expect(() => verifyStateProof(p.state_root, absent.key, value, p.proof)).toThrow(/leaf is for key hash/);
    // Claiming absence of a present entry, or a value for an absent one.
    expect(() => verifyStateProof(p.state_root, p.key, null, p.proof)).toThrow(/holds a value/);
    expect(() => verifyStateProof(absent.state_root, absent.key, value, absent.proof)).toThrow(/shows the key absent|leaf is for key hash/);
    // A sibling flipped: the path no longer reaches the root.
    const withSiblings = proofs.find((x) => x.value_bytes !== null && x.proof.siblings.some((s) => s !== 'Null'))!;
    const siblings = withSiblings.proof.siblings.map((s) => (s === 'Null' ? s : JSON.parse(JSON.stringify(s))));
    const i = siblings.findIndex((s) => s !== 'Null');
    const node = siblings[i] as Record<string, Record<string, number[]>>;
    const inner = Object.values(node)[0];
    const field = Object.keys(inner)[0];
    inner[field][0] ^= 1;
    expect(() =>
      verifyStateProof(withSiblings.state_root, withSiblings.key, fromHex(withSiblings.value_bytes!), { ...withSiblings.proof, siblings }),
    ).toThrow(/not the block's state root/);
  });

  it('names a bad key', () => {
    expect(() => stateKeyBytes('bogus/1')).toThrow(/unknown kind "bogus"/);
    expect(() => stateKeyBytes('account')).toThrow(/takes 1 part/);
    expect(() => stateKeyBytes('proposal/x')).toThrow(/not a number/);
  });
});
