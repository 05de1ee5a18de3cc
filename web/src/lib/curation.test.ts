import { describe, expect, it } from 'vitest';
import { checkAddress, curateAction, curationQueue, curationRole, hasVoted, tally, type CurationVote } from './curation';
import type { ContributionView, DatanetLedger } from './wire';

const OWNER = 'trib' + 'a'.repeat(40);
const OTHER = 'trib' + 'b'.repeat(40);
const datanet = (curation: DatanetLedger['curation']): DatanetLedger => ({
  id: '1'.repeat(64),
  name: 'rivers',
  owner: OWNER,
  metadata_hash: '2'.repeat(64),
  data_type: 'text',
  curation,
  stake_per_contribution: '0',
  visibility: 'public',
  created_height: 1,
  contributions: 0,
  accepted: 0,
  rows_accepted: 0,
  latest_version: 0,
});
const contribution = (id: string, status: string, on_ledger: boolean): ContributionView => ({
  id,
  datanet: '1'.repeat(64),
  datanet_name: 'rivers',
  contributor: OTHER,
  file_name: `${id}.txt`,
  rows: 1,
  duplicates_rejected: 0,
  quality_bp: 9000,
  status,
  on_ledger,
  stake: '0',
  slashed: '0',
});

describe('curation', () => {
  it('queues only pending contributions the ledger knows', () => {
    const q = curationQueue([
      contribution('a', 'pending', true),
      contribution('b', 'unsubmitted (no Contribute transaction)', false),
      contribution('c', 'accepted', true),
      contribution('d', 'rejected: spam', true),
    ]);
    expect(q.map((c) => c.id)).toEqual(['a']);
  });

  it('lets the owner decide under owner approval, and gOPEN holders vote otherwise', () => {
    const owned = datanet({ mode: 'owner_approval' });
    expect(curationRole(owned, OWNER, 0n)).toEqual({ kind: 'owner' });
    const r = curationRole(owned, OTHER, 5n);
    expect(r.kind).toBe('none');
    expect(r.kind === 'none' && r.why).toContain(OWNER);
    expect(curationRole(owned, null, 0n).kind).toBe('none');
    const voted = datanet({ mode: 'validator_vote', quorum_bps: 5000 });
    expect(curationRole(voted, OTHER, 5n)).toEqual({ kind: 'voter', power: 5n });
    const none = curationRole(voted, OWNER, 0n);
    expect(none.kind === 'none' && none.why).toMatch(/stake OPEN/);
  });

  it('tallies votes against the quorum rounded up, as the ledger does', () => {
    const votes: CurationVote[] = [
      { voter: OWNER, accept: true, power: '30', reason: '' },
      { voter: OTHER, accept: false, power: '12', reason: 'off topic' },
    ];
    // 3340 bps of 100 = 33.4 → 34 needed.
    expect(tally(votes, 3340, 100n)).toEqual({ accept: 30n, reject: 12n, needed: 34n });
    expect(tally([], 5000, 100n).needed).toBe(50n);
    expect(hasVoted(votes, OTHER)).toBe(true);
    expect(hasVoted(votes, 'trib' + 'c'.repeat(40))).toBe(false);
    expect(hasVoted(votes, null)).toBe(false);
  });

  it('builds Curate under the ledger rules for the reason', () => {
    expect(curateAction('ab', true, '')).toEqual({ type: 'curate', contribution: 'ab', accept: true, reason: '' });
    expect(() => curateAction('ab', false, '  ')).toThrow('a rejection must state a reason');
    expect(curateAction('ab', false, 'off topic')).toMatchObject({ reason: 'off topic' });
    // 129 two-byte characters = 258 bytes: over the 256-byte limit although only 129 characters.
    expect(() => curateAction('ab', false, 'é'.repeat(129))).toThrow(/258 bytes/);
  });

  it('reads an address or says what is wrong with it', () => {
    expect(checkAddress(' trib' + 'AB'.repeat(20) + ' ')).toBe('trib' + 'ab'.repeat(20));
    expect(() => checkAddress('trib12')).toThrow(/invalid address/);
  });
});
