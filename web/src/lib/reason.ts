// A serde-tagged rejection (`{"reason":"low_quality","score_bp":1200,…}`)
// as one sentence: the reason in words, then its details.
export function reasonText(r: ({ reason: string } & Record<string, unknown>) | null): string {
  if (!r) return '';
  const details = Object.entries(r)
    .filter(([k]) => k !== 'reason')
    .map(([k, v]) => `${k.replaceAll('_', ' ')} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
  const head = r.reason.replaceAll('_', ' ');
  return details.length ? `${head} (${details.join(', ')})` : head;
}
