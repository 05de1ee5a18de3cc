// OPEN amounts: u128 base units (18 decimals) as bigint, parsed from and
// formatted to decimal OPEN text exactly as crates/types/src/amount.rs does
// (no floating point anywhere).

export const DECIMALS = 18;
export const ONE_OPEN = 10n ** 18n;
const U128_MAX = (1n << 128n) - 1n;

/** `"1.5"` OPEN → base units; throws a sentence on bad input. */
export function parseOpen(text: string): bigint {
  const clean = text.trim().replaceAll('_', '');
  const m = /^(\d*)(?:\.(\d*))?$/.exec(clean);
  if (!m || (m[1] === '' && (m[2] ?? '') === '')) {
    throw new Error(`"${text}" is not an amount of OPEN (write e.g. 12.5)`);
  }
  const frac = m[2] ?? '';
  if (frac.length > DECIMALS) {
    throw new Error(`"${text}" has more than ${DECIMALS} decimals`);
  }
  const v = BigInt(m[1] || '0') * ONE_OPEN + BigInt((frac + '0'.repeat(DECIMALS)).slice(0, DECIMALS));
  if (v > U128_MAX) throw new Error(`"${text}" is too large`);
  return v;
}

/** Base units → OPEN text without trailing zeros (`"1.5"`, `"0"`). */
export function formatOpen(base: bigint | string): string {
  const v = typeof base === 'string' ? BigInt(base) : base;
  const int = v / ONE_OPEN;
  const frac = (v % ONE_OPEN).toString().padStart(DECIMALS, '0').replace(/0+$/, '');
  return frac ? `${int}.${frac}` : `${int}`;
}
