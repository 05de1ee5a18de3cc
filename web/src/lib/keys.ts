// ed25519 keys and addresses as crates/types/src/keys.rs defines them:
// an address is `trib` + hex of the first 20 bytes of
// Hash::domain("tributary address v1", [public key]). Signing is RFC 8032
// ed25519 (deterministic), so the signature equals the Rust side's
// byte for byte; @noble/ed25519 does the curve work.
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';
import { fromHex, hashDomain, toHex } from './bytes';

ed.hashes.sha512 = sha512;

const ADDRESS_PREFIX = 'trib';

/** The address of a 32-byte public key. */
export function addressOf(publicKey: Uint8Array): string {
  return ADDRESS_PREFIX + toHex(hashDomain('tributary address v1', [publicKey]).slice(0, 20));
}

/** `trib…` text → the 20 address bytes, or a sentence naming the problem. */
export function parseAddress(text: string): Uint8Array {
  const t = text.trim();
  if (!t.startsWith(ADDRESS_PREFIX) || !/^[0-9a-fA-F]{40}$/.test(t.slice(4))) {
    throw new Error(`invalid address "${t.slice(0, 80)}": expected 'trib' followed by 40 hex characters`);
  }
  return fromHex(t.slice(4), 20, 'address');
}

/** A key held in memory while the wallet is unlocked. */
export interface KeyPair {
  seed: Uint8Array;
  publicKey: Uint8Array;
  address: string;
}

export function keyFromSeed(seed: Uint8Array): KeyPair {
  if (seed.length !== 32) throw new Error(`an ed25519 seed is 32 bytes, got ${seed.length}`);
  const publicKey = ed.getPublicKey(seed);
  return { seed, publicKey, address: addressOf(publicKey) };
}

export function generateKey(): KeyPair {
  return keyFromSeed(crypto.getRandomValues(new Uint8Array(32)));
}

export function sign(key: KeyPair, message: Uint8Array): Uint8Array {
  return ed.sign(message, key.seed);
}

export function verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  return ed.verify(signature, message, publicKey);
}
