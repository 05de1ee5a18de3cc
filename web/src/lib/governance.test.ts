import { describe, expect, it } from 'vitest';
import { buildChange, decide, PARAMS, statusText, valueText } from './governance';
import { ACTION_TAGS } from './tx';

const rules = { gov_quorum_bps: 3340, gov_threshold_bps: 5000, gov_veto_bps: 3340 };
const t = (yes: number, no: number, abstain: number, veto: number, total: number) => ({
  yes: BigInt(yes),
  no: BigInt(no),
  abstain: BigInt(abstain),
  veto: BigInt(veto),
  total: BigInt(total),
});

describe('governance', () => {
  it('decides a tally as the ledger does (its own test cases)', () => {
    expect(decide(t(60, 40, 0, 0, 100), rules)).toBe('passed');
    expect(decide(t(50, 50, 0, 0, 100), rules)).toBe('rejected');
    expect(decide(t(10, 0, 0, 0, 100), rules)).toBe('no_quorum');
    expect(decide(t(0, 0, 40, 0, 100), rules)).toBe('rejected');
    expect(decide(t(60, 0, 0, 40, 100), rules)).toBe('vetoed');
    expect(decide(t(0, 0, 0, 0, 0), rules)).toBe('no_quorum');
    // Quorum counts at exactly the share: 3340 of 10000.
    expect(decide(t(3340, 0, 0, 0, 10000), rules)).toBe('passed');
    expect(decide(t(3339, 0, 0, 0, 10000), rules)).toBe('no_quorum');
  });

  it('covers every parameter change the encoder knows, once', () => {
    expect(new Set(PARAMS.map((p) => p.param)).size).toBe(PARAMS.length);
    expect(PARAMS.length).toBe(20);
    expect(ACTION_TAGS.propose).toBe(4);
  });

  it('builds changes from form text and refuses bad text in words', () => {
    expect(buildChange('min_fee', '0.5')).toEqual({ param: 'min_fee', value: '500000000000000000' });
    expect(buildChange('gov_quorum_bps', '33.4')).toEqual({ param: 'gov_quorum_bps', value: 3340 });
    expect(buildChange('gov_voting_period_blocks', '1_000')).toEqual({ param: 'gov_voting_period_blocks', value: 1000 });
    expect(buildChange('gov_deposit_burn_on_fail', 'No')).toEqual({ param: 'gov_deposit_burn_on_fail', value: false });
    expect(buildChange('fee_split', '50, 20, 10, 10, 10')).toEqual({
      param: 'fee_split',
      value: { contributors_bps: 5000, adapter_owner_bps: 2000, base_model_owner_bps: 1000, stakers_bps: 1000, treasury_bps: 1000 },
    });
    expect(() => buildChange('fee_split', '50, 20, 10, 10, 5')).toThrow('sum to 95%, not 100%');
    expect(() => buildChange('gov_quorum_bps', '101')).toThrow(/percentage from 0 to 100/);
    expect(() => buildChange('max_block_txs', '-1')).toThrow(/whole number/);
  });

  it('says values and statuses in words', () => {
    expect(valueText('amount', '1500000000000000000')).toBe('1.5 OPEN');
    expect(valueText('bps', 3340)).toBe('33.4%');
    expect(valueText('bps', 5000)).toBe('50%');
    expect(valueText('fee_split', { contributors_bps: 5000, adapter_owner_bps: 2000, base_model_owner_bps: 1000, stakers_bps: 1000, treasury_bps: 1000 })).toBe(
      'contributors 50%, adapter owner 20%, base model owner 10%, stakers 10%, treasury 10%',
    );
    expect(statusText('no_quorum')).toBe('failed (no quorum)');
  });
});
