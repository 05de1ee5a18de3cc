// Curating a datanet's contributions: which ones wait in the queue, who may
// decide them (the owner under owner approval; any gOPEN holder under a
// validator vote), the vote tally against the quorum, and the `Curate`
// action with the ledger's own rules for its reason
// (crates/ledger/src/modules/datanet.rs: at most 256 bytes, required to
// reject).

import { parseAddress } from './keys';
import type { Action } from './tx';
import type { ContributionView, DatanetLedger } from './wire';

/** The ledger's limit on a curation reason, in UTF-8 bytes. */
export const MAX_REASON_BYTES = 256;

/** A curation vote as the ledger records it (`CurationVote`). */
export interface CurationVote {
  voter: string;
  accept: boolean;
  power: string;
  reason: string;
}

/** A contribution's ledger record (`contribution/<id>` in /v1/proofs). */
export interface LedgerContribution {
  id: string;
  datanet: string;
  contributor: string;
  stake: string;
  rows_root: string;
  rows: number;
  bytes: number;
  status: { status: string; reason?: string };
  submitted_height: number;
  curation_deadline: number;
  decided_height: number | null;
  release_height: number | null;
  slashed: string;
  votes: CurationVote[];
}

/** The contributions waiting for a decision: on the ledger and pending. */
export function curationQueue(items: ContributionView[]): ContributionView[] {
  return items.filter((c) => c.on_ledger && c.status === 'pending');
}

/** What the connected account may do in a datanet's queue. */
export type CurationRole =
  | { kind: 'owner' }
  | { kind: 'voter'; power: bigint }
  | { kind: 'none'; why: string };

export function curationRole(d: DatanetLedger, address: string | null, votingPower: bigint): CurationRole {
  if (!address) return { kind: 'none', why: 'connect and unlock a wallet to curate' };
  if (d.curation.mode === 'owner_approval') {
    return address === d.owner
      ? { kind: 'owner' }
      : { kind: 'none', why: `only the owner (${d.owner}) approves or rejects contributions to this datanet` };
  }
  return votingPower > 0n
    ? { kind: 'voter', power: votingPower }
    : { kind: 'none', why: 'voting on contributions takes gOPEN voting power: stake OPEN in the wallet first' };
}

/** A validator vote's standing: power cast each way against the quorum of all gOPEN. */
export interface Tally {
  accept: bigint;
  reject: bigint;
  /** The power either side needs (quorum × total gOPEN, rounded up). */
  needed: bigint;
}

export function tally(votes: CurationVote[], quorumBps: number, totalGopen: bigint): Tally {
  let accept = 0n;
  let reject = 0n;
  for (const v of votes) {
    if (v.accept) accept += BigInt(v.power);
    else reject += BigInt(v.power);
  }
  const needed = (totalGopen * BigInt(quorumBps) + 9_999n) / 10_000n;
  return { accept, reject, needed };
}

/** Whether `address` has already voted on the contribution. */
export function hasVoted(votes: CurationVote[], address: string | null): boolean {
  return !!address && votes.some((v) => v.voter === address);
}

/** The `Curate` action, refused here in the ledger's words when its reason breaks the ledger's rules. */
export function curateAction(contribution: string, accept: boolean, reason: string): Action {
  const len = new TextEncoder().encode(reason).length;
  if (len > MAX_REASON_BYTES) {
    throw new Error(`the reason is ${len} bytes; the ledger takes at most ${MAX_REASON_BYTES}`);
  }
  if (!accept && reason.trim() === '') throw new Error('a rejection must state a reason');
  return { type: 'curate', contribution, accept, reason };
}

/** A `trib` address from user input (lowercased), or a sentence saying what is wrong with it. */
export function checkAddress(text: string): string {
  parseAddress(text);
  return text.trim().toLowerCase();
}
