// The explorer's search box: what a query names, by its shape alone.
// A height is digits; an address is `trib` + 40 hex; 64 hex is a
// transaction hash or a receipt id (the page tries the transaction first).
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
