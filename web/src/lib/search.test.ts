import { describe, expect, it } from 'vitest';
import { classify } from './search';

describe('explorer search', () => {
  it('tells heights, addresses and hashes apart', () => {
    expect(classify(' 12 ')).toEqual({ kind: 'block', path: '/explorer/block/12' });
    const a = 'trib' + 'AB'.repeat(20);
    expect(classify(a)).toEqual({ kind: 'account', path: '/explorer/account/trib' + 'ab'.repeat(20) });
    expect(classify('0x' + 'F'.repeat(64))).toEqual({ kind: 'hash', hash: 'f'.repeat(64) });
    expect(classify('hello').kind).toBe('invalid');
    expect(classify('trib12').kind).toBe('invalid');
  });
});
