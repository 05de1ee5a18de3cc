// JSON shapes of the routes the app reads (crates/client/src/wire/).
// Amounts are base-unit decimal strings; hashes and keys are hex;
// addresses are `trib` + 40 hex.

export interface Status {
  chain_id: string;
  height: number;
  head_hash: string;
  state_root: string;
  time_ms: number;
  producer: string;
  mempool_size: number;
  version: string;
}

export interface Unbonding {
  amount: string;
  release_height: number;
}

export interface Account {
  address: string;
  balance: string;
  staked: string;
  unbonding: Unbonding[];
  delegate: string | null;
  voting_power: string;
  /** Staking rewards accrued and not yet claimed (what a claim pays now). */
  staking_rewards: string;
  nonce: number;
  next_nonce: number;
}

export interface SignedTxJson {
  tx: {
    chain_id: string;
    sender: string;
    nonce: number;
    fee: string;
    action: { type: string; [k: string]: unknown };
  };
  signature: string;
}

export interface TxView {
  hash: string;
  status: 'pending' | 'committed';
  height: number | null;
  index: number | null;
  tx: SignedTxJson;
  receipt: unknown;
}

export interface BlockHeader {
  height: number;
  time_ms: number;
  parent: string;
  tx_root: string;
  state_root: string;
  producer: string;
  signature: string;
}

export interface Block {
  hash: string;
  header: BlockHeader;
  txs: string[];
  end_block_events: unknown[];
}

export interface DatanetLedger {
  id: string;
  name: string;
  owner: string;
  metadata_hash: string;
  data_type: 'text' | 'instruction' | 'chat';
  curation: { mode: 'owner_approval' } | { mode: 'validator_vote'; quorum_bps: number };
  stake_per_contribution: string;
  visibility: 'public' | 'permissioned';
  created_height: number;
  contributions: number;
  accepted: number;
  rows_accepted: number;
  latest_version: number;
}

export interface DatanetView {
  ledger: DatanetLedger;
  description: string;
  tags: string[];
  quotas?: unknown;
}

export interface ContributionView {
  id: string;
  datanet: string;
  datanet_name: string;
  contributor: string;
  file_name: string;
  rows: number;
  duplicates_rejected: number;
  /** Mean quality of its stored rows, basis points; null when none. */
  quality_bp: number | null;
  status: string;
  on_ledger: boolean;
  stake: string;
  slashed: string;
}

export interface VersionView {
  version: number;
  root: string;
  rows: number;
  on_ledger: boolean;
  height: number | null;
}

export interface LeaderboardEntry {
  contributor: string;
  contributions: number;
  accepted: number;
  rejected: number;
  rejected_at_validation: number;
  rows_accepted: number;
  acceptance_bps: number;
  duplicates_rejected: number;
  slashed: string;
  earnings: string;
}

export interface PageView<T> {
  items: T[];
  next: string | null;
}

export interface RowReport {
  index: number;
  line: number;
  row_hash: string;
  shape: string;
  bytes: number;
  quality: { score_bp: number; length_bp: number; charset_bp: number; repetition_bp: number; wordlike_bp: number };
  rejection: ({ reason: string } & Record<string, unknown>) | null;
}

export interface ValidationReport {
  datanet: string;
  contribution: string;
  contributor: string;
  file_name: string;
  file_hash: string;
  file_bytes: number;
  kind: string | null;
  rows: RowReport[];
  rows_accepted: number;
  duplicates_rejected: number;
  rejection: ({ reason: string } & Record<string, unknown>) | null;
  rows_root: string;
}

export interface ContributionResponse {
  report: ValidationReport;
  action: { type: 'contribute'; [k: string]: unknown } | null;
}

// Publishing a datanet version (POST /v1/datanets/{name}/publish).
export interface PublishPlan {
  version: number;
  root: string;
  rows: number;
  contributions: string[];
  action: import('./tx').Action;
}
