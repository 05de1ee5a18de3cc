import { describe, expect, it } from 'vitest';
import { formatOpen, parseOpen, ONE_OPEN } from './amount';

describe('OPEN amounts', () => {
  it('parse decimal text to base units exactly', () => {
    expect(parseOpen('1')).toBe(ONE_OPEN);
    expect(parseOpen('1.5')).toBe(ONE_OPEN + ONE_OPEN / 2n);
    expect(parseOpen('0.000000000000000001')).toBe(1n);
    expect(parseOpen('1_000')).toBe(1000n * ONE_OPEN);
    expect(parseOpen('.25')).toBe(ONE_OPEN / 4n);
  });
  it('refuse what the Rust parser refuses, in words', () => {
    expect(() => parseOpen('')).toThrow(/not an amount/);
    expect(() => parseOpen('1.2.3')).toThrow(/not an amount/);
    expect(() => parseOpen('-1')).toThrow(/not an amount/);
    expect(() => parseOpen('0.0000000000000000001')).toThrow(/decimals/);
    expect(() => parseOpen('1' + '0'.repeat(30))).toThrow(/too large/);
  });
  it('format without trailing zeros', () => {
    expect(formatOpen('1500000000000000000')).toBe('1.5');
    expect(formatOpen(0n)).toBe('0');
    expect(formatOpen(1n)).toBe('0.000000000000000001');
  });
});
