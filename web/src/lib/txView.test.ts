import { describe, expect, it } from 'vitest';
import { actionLines, actionName } from './txView';

describe('what will be signed, in words', () => {
  it('shows amounts in OPEN and other fields as they are', () => {
    expect(actionName('transfer')).toBe('Transfer OPEN');
    expect(actionLines({ type: 'transfer', to: 'trib00', amount: '1500000000000000000' })).toEqual([
      { label: 'To', value: 'trib00' },
      { label: 'Amount', value: '1.5 OPEN' },
    ]);
    expect(actionLines({ type: 'curate', contribution: 'ab', accept: false, reason: '' })).toEqual([
      { label: 'Contribution', value: 'ab' },
      { label: 'Accept', value: 'no' },
      { label: 'Reason', value: '(empty)' },
    ]);
  });
});
