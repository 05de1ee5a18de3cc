// Hex and byte helpers, and the blake3 hashes of crates/types/src/hash.rs:
// `Hash::of` (plain blake3) and `Hash::domain` (blake3 in derive-key mode
// with a context string, each part prefixed by its u64 little-endian length).
import { blake3 } from '@noble/hashes/blake3.js';

const enc = new TextEncoder();

export function utf8(s: string): Uint8Array {
  return enc.encode(s);
}

export function toHex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

/** Hex (an optional `0x` prefix allowed) of exactly `len` bytes when given. */
export function fromHex(hex: string, len?: number, what = 'value'): Uint8Array {
  const h = hex.trim().replace(/^0x/, '');
  if (!/^([0-9a-fA-F]{2})*$/.test(h) || (len !== undefined && h.length !== len * 2)) {
    throw new Error(
      `invalid ${what} "${hex.slice(0, 80)}": expected ${len === undefined ? 'hex' : len * 2 + ' hex characters'}`,
    );
  }
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function u64le(n: bigint | number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  return out;
}

/** `Hash::of`: blake3 of the bytes. */
export function hashOf(bytes: Uint8Array): Uint8Array {
  return blake3(bytes);
}

/** `Hash::domain`: blake3 derive-key(domain) over length-prefixed parts. */
export function hashDomain(domain: string, parts: Uint8Array[]): Uint8Array {
  const h = blake3.create({ context: utf8(domain) });
  for (const p of parts) {
    h.update(u64le(p.length));
    h.update(p);
  }
  return h.digest();
}
