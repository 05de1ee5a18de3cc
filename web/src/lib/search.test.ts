import { describe, expect, it } from 'vitest';
import { classify, resolveHash } from './search';

describe('explorer search', () => {
  it('tells heights, addresses and hashes apart', () => {
    expect(classify(' 12 ')).toEqual({ kind: 'block', path: '/explorer/block/12' });
    const a = 'trib' + 'AB'.repeat(20);
    expect(classify(a)).toEqual({ kind: 'account', path: '/explorer/account/trib' + 'ab'.repeat(20) });
    expect(classify('0x' + 'F'.repeat(64))).toEqual({ kind: 'hash', hash: 'f'.repeat(64) });
    expect(classify('hello').kind).toBe('invalid');
    expect(classify('trib12').kind).toBe('invalid');
  });

  it('tries each kind of hash in order and says in words when none has it', async () => {
    const tried: string[] = [];
    const probe = (what: string, hit: boolean) => ({
      what,
      find: async (h: string) => {
        tried.push(what);
        return hit ? `/${what}/${h}` : null;
      },
    });
    expect(await resolveHash('ab', [probe('transaction', false), probe('receipt', true), probe('adapter', true)])).toEqual({
      path: '/receipt/ab',
    });
    expect(tried).toEqual(['transaction', 'receipt']);
    const miss = await resolveHash('cd', [probe('transaction', false), probe('receipt', false), probe('adapter', false)]);
    expect(miss).toEqual({
      notFound: 'not found: no transaction, receipt or adapter on this ledger has the hash cd (blocks are found by height)',
    });
  });
});
