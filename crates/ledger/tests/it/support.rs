//! Shared fixtures: deterministic keys, a dev genesis, transaction builders.

use tempfile::TempDir;
use trib_ledger::{Action, Genesis, Ledger, SignedTransaction, Transaction};
use trib_types::{Address, Amount, SecretKey};

/// The block producer of every test chain.
pub fn producer() -> SecretKey {
    SecretKey::from_seed([0xAA; 32])
}

/// User key `i` (deterministic).
pub fn user(i: u8) -> SecretKey {
    SecretKey::from_seed([i; 32])
}

/// A dev genesis giving each of `n` users 1,000 OPEN.
pub fn genesis(n: u8) -> Genesis {
    Genesis::dev(
        producer().public_key(),
        (1..=n)
            .map(|i| (user(i).address(), Amount::open(1_000)))
            .collect(),
    )
}

/// A fresh ledger in a temporary directory.
pub struct TestChain {
    /// Keeps the directory alive as long as the chain.
    pub _dir: TempDir,
    pub ledger: Ledger,
    pub time: u64,
}

impl TestChain {
    pub fn new(genesis: &Genesis) -> TestChain {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger =
            Ledger::create(dir.path().join("ledger.redb"), genesis).expect("create ledger");
        TestChain {
            _dir: dir,
            ledger,
            time: 1_000,
        }
    }

    /// Produces one block with `txs`; returns the outcome.
    pub fn block(&mut self, txs: Vec<SignedTransaction>) -> trib_ledger::BlockOutcome {
        self.time += 1_000;
        self.ledger
            .produce_block(txs, self.time, &producer())
            .expect("produce block")
    }

    /// Produces `n` empty blocks.
    pub fn advance(&mut self, n: u64) {
        for _ in 0..n {
            self.block(vec![]);
        }
    }

    /// A signed transaction from `key` with the account's next nonce.
    pub fn tx(&self, key: &SecretKey, action: Action) -> SignedTransaction {
        let nonce = self.ledger.account(&key.address()).unwrap().nonce;
        sign(self.ledger.chain_id(), key, nonce, action)
    }
}

/// Signs `action` from `key` with `nonce` and the minimum dev fee.
pub fn sign(chain_id: &str, key: &SecretKey, nonce: u64, action: Action) -> SignedTransaction {
    Transaction {
        chain_id: chain_id.to_string(),
        sender: key.public_key(),
        nonce,
        fee: trib_ledger::Params::dev().min_fee,
        action,
    }
    .sign(key)
}

/// A transfer action.
pub fn transfer(to: Address, open: u64) -> Action {
    Action::Transfer {
        to,
        amount: Amount::open(open),
    }
}
