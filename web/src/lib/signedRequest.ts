// Signed requests (crates/client/src/signed_read.rs): the account's key
// signs the text
//   tributary signed read v1\n{METHOD}\n{path?query}\n{timestamp}\n{nonce}\n{blake3(body) hex}
// and the request carries the public key, address, timestamp (Unix
// seconds), nonce and signature in `x-trib-*` headers. The node rebuilds
// the same text and checks it (window of 300 s, each signature once).
import { hashOf, toHex, utf8 } from './bytes';
import { getJson } from './api';
import { sign, type KeyPair } from './keys';

export function signedMessage(
  method: string,
  pathAndQuery: string,
  timestamp: number,
  nonce: string,
  body: Uint8Array,
): Uint8Array {
  return utf8(
    `tributary signed read v1\n${method.toUpperCase()}\n${pathAndQuery}\n${timestamp}\n${nonce}\n${toHex(hashOf(body))}`,
  );
}

/** The `x-trib-*` headers of a request signed now with a fresh nonce. */
export function signRequest(
  key: KeyPair,
  method: string,
  pathAndQuery: string,
  body: Uint8Array,
  timestamp = Math.floor(Date.now() / 1000),
  nonce = toHex(crypto.getRandomValues(new Uint8Array(16))),
): Record<string, string> {
  const sig = sign(key, signedMessage(method, pathAndQuery, timestamp, nonce, body));
  return {
    'x-trib-public-key': toHex(key.publicKey),
    'x-trib-address': key.address,
    'x-trib-timestamp': String(timestamp),
    'x-trib-nonce': nonce,
    'x-trib-signature': toHex(sig),
  };
}

/** GET a JSON body, signed by `key` when there is one (routes that show a signed caller more), else anonymous. */
export function getJsonAs<T>(path: string, key: KeyPair | null): Promise<T> {
  return getJson<T>(path, key ? { headers: signRequest(key, 'GET', path, new Uint8Array()) } : undefined);
}
