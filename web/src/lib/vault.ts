// Keys at rest in the browser. A seed never leaves the page and is never
// stored in clear: it is sealed with AES-256-GCM (WebCrypto) under a key
// derived from the passphrase by PBKDF2-HMAC-SHA256 (600,000 iterations,
// OWASP's 2023 figure), with the public key as associated data so a
// ciphertext moved to another entry fails to open. Entries live in
// localStorage under `trib.keys`.
//
// `trib keys` files (crates/node/src/keystore.rs) import in both forms: a
// plain seed, or the `argon2id-xchacha20poly1305` suite (Argon2id v0x13
// with the file's m/t/p costs, XChaCha20-Poly1305 with the public key as
// associated data), opened with @noble/hashes and @noble/ciphers.
import { argon2idAsync } from '@noble/hashes/argon2.js';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { fromHex, toHex, utf8 } from './bytes';
import { keyFromSeed, type KeyPair } from './keys';

const STORAGE_KEY = 'trib.keys';
export const PBKDF2_ITERATIONS = 600_000;

/** One sealed key as stored. Binary fields are hex. */
export interface StoredKey {
  name: string;
  address: string;
  public_key: string;
  kdf: { name: 'pbkdf2-sha256'; iterations: number; salt: string };
  iv: string;
  ciphertext: string;
}

async function aesKey(passphrase: string, salt: Uint8Array, iterations: number): Promise<CryptoKey> {
  const base = await crypto.subtle.importKey('raw', utf8(passphrase), 'PBKDF2', false, ['deriveKey']);
  return crypto.subtle.deriveKey(
    { name: 'PBKDF2', hash: 'SHA-256', salt, iterations },
    base,
    { name: 'AES-GCM', length: 256 },
    false,
    ['encrypt', 'decrypt'],
  );
}

/** Seals `key` under `passphrase` (refuses an empty one). */
export async function seal(name: string, key: KeyPair, passphrase: string): Promise<StoredKey> {
  if (!passphrase) throw new Error('choose a passphrase: keys are never stored unencrypted');
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const k = await aesKey(passphrase, salt, PBKDF2_ITERATIONS);
  const ct = new Uint8Array(
    await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: key.publicKey }, k, key.seed),
  );
  return {
    name,
    address: key.address,
    public_key: toHex(key.publicKey),
    kdf: { name: 'pbkdf2-sha256', iterations: PBKDF2_ITERATIONS, salt: toHex(salt) },
    iv: toHex(iv),
    ciphertext: toHex(ct),
  };
}

/** Opens a sealed key; a wrong passphrase is named as such. */
export async function unseal(stored: StoredKey, passphrase: string): Promise<KeyPair> {
  const k = await aesKey(passphrase, fromHex(stored.kdf.salt), stored.kdf.iterations);
  let seed: Uint8Array;
  try {
    seed = new Uint8Array(
      await crypto.subtle.decrypt(
        { name: 'AES-GCM', iv: fromHex(stored.iv), additionalData: fromHex(stored.public_key) },
        k,
        fromHex(stored.ciphertext),
      ),
    );
  } catch {
    throw new Error(`wrong passphrase for key "${stored.name}"`);
  }
  const key = keyFromSeed(seed);
  if (key.address !== stored.address) throw new Error(`key "${stored.name}" is corrupt: its seed gives another address`);
  return key;
}

export function loadStored(): StoredKey[] {
  try {
    const v = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '[]');
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

export function saveStored(keys: StoredKey[]) {
  localStorage.setItem(STORAGE_KEY, JSON.stringify(keys));
}

/** A `trib keys` file read back: its name and key. */
export interface ImportedKey {
  name: string;
  key: KeyPair;
  encrypted: boolean;
}

/** Whether a `trib keys` file's seed is passphrase-encrypted. */
export function tribKeyFileIsEncrypted(text: string): boolean {
  try {
    return JSON.parse(text)?.secret?.kind === 'encrypted';
  } catch {
    return false;
  }
}

/** Reads a `trib keys` file (plain or argon2id-xchacha20poly1305). */
export async function importTribKeyFile(text: string, passphrase: string): Promise<ImportedKey> {
  let file: any;
  try {
    file = JSON.parse(text);
  } catch {
    throw new Error('this is not a trib key file (not JSON)');
  }
  if (file?.version !== 1 || typeof file.public_key !== 'string' || !file.secret) {
    throw new Error('this is not a trib key file (version 1 with public_key and secret expected)');
  }
  const pk = fromHex(file.public_key, 32, 'public key');
  let seed: Uint8Array;
  const s = file.secret;
  if (s.kind === 'plain') {
    seed = fromHex(s.seed, 32, 'seed');
  } else if (s.kind === 'encrypted') {
    if (s.suite !== 'argon2id-xchacha20poly1305') throw new Error(`unknown cipher suite "${s.suite}"`);
    if (!passphrase) throw new Error(`key "${file.name}" is encrypted: enter its passphrase`);
    const key = await argon2idAsync(utf8(passphrase), fromHex(s.salt, 16, 'salt'), {
      m: s.kdf.m_cost_kib,
      t: s.kdf.t_cost,
      p: s.kdf.p_cost,
      dkLen: 32,
    });
    try {
      seed = xchacha20poly1305(key, fromHex(s.nonce, 24, 'nonce'), pk).decrypt(fromHex(s.ciphertext));
    } catch {
      throw new Error(`wrong passphrase for key "${file.name}" (or its file was modified)`);
    }
  } else {
    throw new Error(`unknown secret kind "${s.kind}"`);
  }
  const key = keyFromSeed(seed);
  if (toHex(key.publicKey) !== toHex(pk)) throw new Error('the file is corrupt: its seed does not give its public key');
  return { name: String(file.name ?? 'imported'), key, encrypted: s.kind === 'encrypted' };
}
