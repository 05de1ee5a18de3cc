//! The ledger routes: status, accounts, transactions, blocks, governance,
//! supply, proofs, and signing and submitting transactions.

use std::time::Duration;

use trib_ledger::{Action, Params, Proposal, SignedTransaction, StateProof, Transaction};
use trib_types::{Address, Amount, Canonical, SecretKey, TxHash};

use super::{enc_query, NodeClient, LEDGER_TIMEOUT};
use crate::error::ClientError;
use crate::wire::{
    AccountView, BlockView, StatusView, SubmitResponse, SupplyView, TxStatus, TxView,
};

impl NodeClient {
    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<StatusView, ClientError> {
        self.get("/v1/status", LEDGER_TIMEOUT).await
    }

    /// `GET /v1/accounts/{address}` (absent accounts read as zero).
    pub async fn account(&self, address: &Address) -> Result<AccountView, ClientError> {
        self.get(&format!("/v1/accounts/{address}"), LEDGER_TIMEOUT)
            .await
    }

    /// `GET /v1/tx/{hash}`; `None` if the node does not know the transaction.
    pub async fn tx(&self, hash: &TxHash) -> Result<Option<TxView>, ClientError> {
        match self.get(&format!("/v1/tx/{hash}"), LEDGER_TIMEOUT).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/blocks/{height}`, or the latest block for `None`.
    pub async fn block(&self, height: Option<u64>) -> Result<BlockView, ClientError> {
        match height {
            Some(h) => self.get(&format!("/v1/blocks/{h}"), LEDGER_TIMEOUT).await,
            None => self.get("/v1/blocks/latest", LEDGER_TIMEOUT).await,
        }
    }

    /// `GET /v1/proposals`.
    pub async fn proposals(&self) -> Result<Vec<Proposal>, ClientError> {
        self.get("/v1/proposals", LEDGER_TIMEOUT).await
    }

    /// `GET /v1/proposals/{id}`.
    pub async fn proposal(&self, id: u64) -> Result<Proposal, ClientError> {
        self.get(&format!("/v1/proposals/{id}"), LEDGER_TIMEOUT)
            .await
    }

    /// `GET /v1/params`.
    pub async fn params(&self) -> Result<Params, ClientError> {
        self.get("/v1/params", LEDGER_TIMEOUT).await
    }

    /// `GET /v1/supply`.
    pub async fn supply(&self) -> Result<SupplyView, ClientError> {
        self.get("/v1/supply", LEDGER_TIMEOUT).await
    }

    /// `GET /v1/proofs?key=…[&height=…]`.
    pub async fn proof(&self, key: &str, height: Option<u64>) -> Result<StateProof, ClientError> {
        let mut path = format!("/v1/proofs?key={}", enc_query(key));
        if let Some(h) = height {
            path.push_str(&format!("&height={h}"));
        }
        self.get(&path, LEDGER_TIMEOUT).await
    }

    /// `POST /v1/tx` with the hex of the canonical encoding.
    pub async fn submit(&self, tx: &SignedTransaction) -> Result<TxHash, ClientError> {
        let url = self.url("/v1/tx");
        let req = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(hex::encode(tx.encode()))
            .timeout(LEDGER_TIMEOUT);
        let r: SubmitResponse = self.json(req, &url).await?;
        Ok(r.hash)
    }

    /// Signs `action` with `key` (chain id from the node, the sender's next
    /// nonce from the node, `fee` or the governed minimum fee) and submits it.
    pub async fn sign_and_submit(
        &self,
        key: &SecretKey,
        fee: Option<Amount>,
        action: Action,
    ) -> Result<SignedTransaction, ClientError> {
        let status = self.status().await?;
        let account = self.account(&key.address()).await?;
        let fee = match fee {
            Some(f) => f,
            None => self.params().await?.min_fee,
        };
        let stx = Transaction {
            chain_id: status.chain_id,
            sender: key.public_key(),
            nonce: account.next_nonce,
            fee,
            action,
        }
        .sign(key);
        let hash = self.submit(&stx).await?;
        debug_assert_eq!(hash, stx.hash());
        tracing::debug!(target: "trib::client", %hash, "transaction submitted");
        Ok(stx)
    }

    /// Polls `GET /v1/tx/{hash}` until the transaction is committed, for at
    /// most `timeout`.
    pub async fn wait_for_commit(
        &self,
        hash: &TxHash,
        timeout: Duration,
    ) -> Result<TxView, ClientError> {
        let start = tokio::time::Instant::now();
        let mut last = "unknown to the node";
        loop {
            if let Some(v) = self.tx(hash).await? {
                if v.status == TxStatus::Committed {
                    return Ok(v);
                }
                last = "pending";
            }
            if start.elapsed() >= timeout {
                return Err(ClientError::WaitTimeout {
                    hash: *hash,
                    waited: timeout,
                    status: last,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
