// The wallet's state for every page: the sealed keys, the active account,
// and the keys unlocked in this tab (held in memory only; a reload locks
// them again).
import type { KeyPair } from './keys';
import { loadStored, saveStored, seal, unseal, type StoredKey } from './vault';

const ACTIVE_KEY = 'trib.active';

export const wallet = $state({
  keys: loadStored() as StoredKey[],
  active: (localStorage.getItem(ACTIVE_KEY) ?? null) as string | null,
  unlocked: {} as Record<string, KeyPair>,
});

if (wallet.active && !wallet.keys.some((k) => k.address === wallet.active)) wallet.active = null;
if (!wallet.active && wallet.keys.length) wallet.active = wallet.keys[0].address;

export function activeKey(): StoredKey | null {
  return wallet.keys.find((k) => k.address === wallet.active) ?? null;
}

/** The unlocked key pair of the active account, if unlocked. */
export function activePair(): KeyPair | null {
  return wallet.active ? (wallet.unlocked[wallet.active] ?? null) : null;
}

export function select(address: string | null) {
  wallet.active = address;
  if (address) localStorage.setItem(ACTIVE_KEY, address);
  else localStorage.removeItem(ACTIVE_KEY);
}

/** Seals and stores a key, makes it active and keeps it unlocked. */
export async function addKey(name: string, key: KeyPair, passphrase: string) {
  if (wallet.keys.some((k) => k.address === key.address)) {
    throw new Error(`this key is already in the wallet (${key.address})`);
  }
  const stored = await seal(name.trim() || 'key', key, passphrase);
  wallet.keys = [...wallet.keys, stored];
  saveStored(wallet.keys);
  wallet.unlocked[key.address] = key;
  select(key.address);
}

export async function unlock(address: string, passphrase: string) {
  const stored = wallet.keys.find((k) => k.address === address);
  if (!stored) throw new Error(`no key for ${address} in this browser`);
  wallet.unlocked[address] = await unseal(stored, passphrase);
}

export function lock(address: string) {
  delete wallet.unlocked[address];
}

export function removeKey(address: string) {
  wallet.keys = wallet.keys.filter((k) => k.address !== address);
  saveStored(wallet.keys);
  lock(address);
  if (wallet.active === address) select(wallet.keys[0]?.address ?? null);
}
