// The explorer's search box: what a query names, by its shape alone.
// A height is digits; an address is `trib` + 40 hex; 64 hex is a hash or
// id of some kind, which `resolveHash` tries kind by kind.
export type SearchTarget =
  | { kind: 'block'; path: string }
  | { kind: 'account'; path: string }
  | { kind: 'hash'; hash: string }
  | { kind: 'invalid'; reason: string };

export function classify(query: string): SearchTarget {
  const q = query.trim();
  if (/^\d+$/.test(q)) return { kind: 'block', path: `/explorer/block/${q}` };
  if (/^trib[0-9a-fA-F]{40}$/.test(q)) return { kind: 'account', path: `/explorer/account/${q.toLowerCase()}` };
  const h = q.replace(/^0x/, '');
  if (/^[0-9a-fA-F]{64}$/.test(h)) return { kind: 'hash', hash: h.toLowerCase() };
  return {
    kind: 'invalid',
    reason: `"${q.slice(0, 80)}" is not a block height, an address (trib + 40 hex) or a hash (64 hex)`,
  };
}

/** One kind of thing a 64-hex query may name: `find` gives its page, or null when there is none. */
export interface HashProbe {
  what: string;
  find: (hash: string) => Promise<string | null>;
}

/** Tries each probe in order; the first page found wins, else a sentence saying what was tried. */
export async function resolveHash(hash: string, probes: HashProbe[]): Promise<{ path: string } | { notFound: string }> {
  for (const p of probes) {
    const path = await p.find(hash);
    if (path) return { path };
  }
  const names = probes.map((p) => p.what);
  const list = names.length > 1 ? `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}` : names[0];
  return { notFound: `not found: no ${list} on this ledger has the hash ${hash} (blocks are found by height)` };
}
