//! The serving side of a node: the OpenLoRA engine over the configured base
//! model, the adapter store under the home, API keys and billing, and the
//! path of one paid request, which reads top to bottom in this file:
//!
//! 1. **authenticate** ([`Serving::authenticate`]): the API key names the
//!    account that pays (`billing.rs` keeps the keys);
//! 2. **admit** ([`Serving::admit`]): the request's `model` is resolved to
//!    the base model or a registered adapter, and the engine's admission
//!    check (`billing.rs` `FeeCheck`) reserves the largest fee before any
//!    compute (402 when the account cannot cover it);
//! 3. **generate** ([`Generation::next`] event by event when streaming,
//!    [`Generation::finish`] for the whole answer): the engine's events;
//! 4. **attribute** ([`Serving::settle_answer`]): the answer is traced
//!    against the datanet versions its adapter was trained on, plus the
//!    gradient share where the adapter has a gradient cache
//!    (`trib_attribution::answer::AnswerAttributor`);
//! 5. **settle** through the [`SettlementSink`] (`Billing`: signs
//!    `SettleInference` with the operator key for the ledger's fee);
//! 6. **store** the answer with its evidence in
//!    `<home>/receipts/<RECEIPT_ID>.json`, for `trib attribution verify`
//!    ([`Serving::verify`]);
//! 7. **respond**: the HTTP layer (`api/openai.rs`) maps the
//!    [`AnswerEvent`]s or the [`PaidAnswer`] (or a [`ServingError`]) to a
//!    response; nothing here knows HTTP.
//!
//! A streamed answer and a whole one take the same path: the answer is
//! settled exactly once, when the engine says it is done, or, when the
//! client goes away first (the SSE stream or the handler's future dropped),
//! for the tokens already sent: dropping a [`Generation`] cancels the
//! request in the engine and settles what was sent on the blocking pool
//! (attribution over the partial answer, a normal receipt).
//!
//! The engine starts with the node when `base_model` is set in
//! `config.toml`. Adapters are looked up in `<home>/adapters/<ADAPTER_ID>/`
//! (PEFT files, the directory named by the ledger adapter id in hex); a
//! request's `model` is the base model's name or a registered adapter's id
//! or name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;
use trib_attribution::answer::{
    answer_trace_params, AnswerAttributor, AnswerTrace, GradientAttributor, StoredAnswer,
    GRADIENT_BUDGET,
};
use trib_ledger::InferenceReceipt;
use trib_serve::{
    AdapterName, AdapterStore, AdmissionToken, Completion, Engine, EngineHandle, GenerateRequest,
    LocalDirStore, ObjectAdapterStore, Prompt, SamplingParams, ServeError, ServedModel,
    StreamEvent, Usage,
};
use trib_types::{AdapterId, Address, DatanetId, Hash, ModelId, ReceiptId};

use crate::apikeys::ApiKeys;
use crate::attribution::{model_tokens, node_catalog};
use crate::attribution_gradient::ModelGradients;
use crate::billing::{Billing, Charge, Settled, SettlementSink};
use crate::chain::Chain;
use crate::config::NodeConfig;
use crate::datanets::DatanetService;
use crate::error::NodeError;
use crate::home::NodeHome;

/// What the engine serves and how requests are charged.
pub(crate) struct Serving {
    pub(crate) engine: EngineHandle,
    pub(crate) base_name: String,
    pub(crate) base_id: ModelId,
    pub(crate) chain: Arc<Chain>,
    pub(crate) billing: Arc<Billing>,
    /// Where answers are paid for (the same [`Billing`]).
    sink: Arc<dyn SettlementSink>,
    pub(crate) keys: ApiKeys,
    /// The trace and gradient share of every answer, and verify
    /// (`trib_attribution::answer`, over the node's adapters).
    pub(crate) attribution: Arc<AnswerAttributor>,
    receipts_dir: PathBuf,
}

/// Why a paid request could not be served or settled; the HTTP layer
/// (`api/openai.rs`) turns each into a response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServingError {
    /// The API key is not one of this node's.
    #[error("unknown API key")]
    UnknownKey,
    /// The request asks for more than one choice.
    #[error("only n = 1 is supported")]
    OneChoiceOnly,
    /// The `model` is neither the base model nor a registered adapter of it.
    #[error("the model `{model}` does not exist: use the base model `{base}` or a registered adapter's id or name (GET /v1/models)")]
    UnknownModel {
        /// The `model` asked for.
        model: String,
        /// The served base model's name.
        base: String,
    },
    /// The ledger could not be read to resolve the model.
    #[error("{0}")]
    Ledger(String),
    /// The engine refused or failed the request (402 at admission, an
    /// unknown or rejected adapter, a full queue, …).
    #[error(transparent)]
    Engine(#[from] ServeError),
    /// The settlement task on the blocking pool did not finish.
    #[error("the settlement task failed: {0}")]
    SettlementTask(String),
    /// The answer was generated but could not be settled.
    #[error("the answer could not be settled: {0}")]
    Settlement(String),
}

/// A request's `model` resolved: the base alone, or a registered adapter.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) adapter: Option<(AdapterId, AdapterName)>,
    /// The datanet versions the adapter was trained on, from the same
    /// ledger read (none for the base model): what its answers are traced
    /// against.
    pub(crate) datanets: Vec<(DatanetId, u32)>,
}

/// One paid request, as the HTTP layer parsed it.
pub(crate) struct PaidRequest {
    /// The account that pays ([`Serving::authenticate`]).
    pub(crate) payer: Address,
    /// The `model` asked for.
    pub(crate) model: String,
    /// The prompt as stored with the answer: the text, or the chat
    /// messages as JSON.
    pub(crate) prompt_text: String,
    /// The prompt as the engine takes it.
    pub(crate) prompt: Prompt,
    pub(crate) sampling: SamplingParams,
    pub(crate) max_tokens: Option<usize>,
    pub(crate) stop: Vec<String>,
    /// Choices asked for (only one is served).
    pub(crate) n: Option<usize>,
}

/// What settling one answer did: the receipt and the trace it paid by.
pub(crate) struct SettledAnswer {
    pub(crate) settled: Settled,
    pub(crate) evidence_hash: Hash,
    pub(crate) method: &'static str,
    /// `None` when the trace failed (then the fallback rule paid).
    pub(crate) trace: Option<AnswerTrace>,
    /// Why the trace failed.
    pub(crate) trace_error: Option<String>,
}

/// A whole answer, settled.
pub(crate) struct PaidAnswer {
    /// The generated text.
    pub(crate) answer: String,
    /// Why it ended, and the tokens charged.
    pub(crate) completion: Completion,
    /// The settlement.
    pub(crate) settled: SettledAnswer,
}

/// One step of a paid request being generated.
pub(crate) enum AnswerEvent {
    /// New output text.
    Delta(String),
    /// The answer is complete and was settled (`Err`: generated, but the
    /// settlement failed, so nothing was charged).
    Done {
        completion: Completion,
        settled: Box<Result<SettledAnswer, ServingError>>,
    },
    /// The engine failed after the request was admitted.
    Failed(ServeError),
}

/// One answer to settle.
pub(crate) struct AnswerToSettle<'a> {
    pub(crate) payer: Address,
    pub(crate) target: &'a Target,
    pub(crate) model: &'a str,
    pub(crate) prompt: &'a str,
    pub(crate) answer: &'a str,
    pub(crate) prompt_tokens: u32,
    pub(crate) completion_tokens: u32,
}

impl Serving {
    /// Starts the engine when the configuration names a base model.
    pub(crate) fn start(
        home: &NodeHome,
        config: &NodeConfig,
        chain: Arc<Chain>,
        datanets: Arc<DatanetService>,
    ) -> Result<Option<Arc<Serving>>, NodeError> {
        let Some(base) = config.base_model.as_ref() else {
            return Ok(None);
        };
        let bad =
            |e: String| NodeError::Services(format!("serving base model {}: {e}", base.display()));
        let info = crate::models::describe_model(base).map_err(|e| bad(e.to_string()))?;
        let model = ServedModel::load(base)
            .map_err(|e| bad(e.to_string()))?
            .accept_base_name(&info.name)
            .accept_base_name(&info.id.to_string())
            // Adapters trained by this node's ModelFactory name the weights
            // file they were trained from as their PEFT base model
            // (compared by file name).
            .accept_base_name(&base.display().to_string());
        let tokens = model_tokens(model.model().clone()).map_err(|e| bad(e.to_string()))?;
        let catalog = Arc::new(node_catalog(
            home.root().join("indexes"),
            datanets,
            chain.clone(),
            tokens,
        ));
        let gradient = GradientAttributor::new(
            Arc::new(ModelGradients::new(
                home.root().join("adapters"),
                base.clone(),
            )),
            GRADIENT_BUDGET,
        );
        let attribution = Arc::new(AnswerAttributor::new(
            catalog,
            Arc::new(gradient),
            answer_trace_params(),
        ));
        let store = adapter_store(home, &config.serving, std::env::vars()).map_err(bad)?;
        let genesis = home.load_genesis()?;
        let operator = home.load_producer(config, &genesis)?;
        let billing = Arc::new(Billing::new(
            chain.clone(),
            operator,
            genesis.chain_id.clone(),
        ));
        let keys = ApiKeys::open(ApiKeys::path_in(home.root()))
            .map_err(|e| NodeError::Services(e.to_string()))?;
        // The 402 check, reserving each request's largest fee (billing.rs).
        let check = crate::billing::FeeCheck::new(billing.clone());
        let adapters = store.describe();
        let engine = Engine::start_with_check(
            Arc::new(model),
            store,
            config.serving.engine_config(),
            Some(Arc::new(check)),
        );
        tracing::info!(target: "trib::serving", model = %info.name, id = %info.id, %adapters,
            operator = %billing.operator(), "serving engine started");
        Ok(Some(Arc::new(Serving {
            engine,
            base_name: info.name,
            base_id: info.id,
            chain,
            sink: billing.clone(),
            billing,
            keys,
            attribution,
            receipts_dir: receipts_dir(home),
        })))
    }

    /// Step 1: the account an API key charges.
    pub(crate) fn authenticate(&self, key: &str) -> Result<Address, ServingError> {
        self.keys.account(key).ok_or(ServingError::UnknownKey)
    }

    /// Step 2: resolves the request's model and submits it to the engine,
    /// whose admission check reserves the largest fee (402 when the account
    /// cannot cover it). Waits for the first engine event, so an error
    /// before any token (unknown or rejected adapter) is an `Err` and
    /// nothing is charged.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        req: PaidRequest,
    ) -> Result<Generation, ServingError> {
        if req.n.is_some_and(|n| n != 1) {
            return Err(ServingError::OneChoiceOnly);
        }
        let target = self
            .resolve(&req.model)
            .map_err(ServingError::Ledger)?
            .ok_or_else(|| ServingError::UnknownModel {
                model: req.model.clone(),
                base: self.base_name.clone(),
            })?;
        let mut sub = self.engine.submit(GenerateRequest {
            prompt: req.prompt,
            adapter: target.adapter.as_ref().map(|(_, n)| n.clone()),
            sampling: req.sampling,
            max_tokens: req.max_tokens,
            stop: req.stop,
            rate_key: Some(req.payer.to_string()),
        })?;
        let first = match sub.events.recv().await {
            Some(StreamEvent::Error(e)) => return Err(e.into()),
            Some(ev) => ev,
            None => return Err(ServeError::ShuttingDown.into()),
        };
        Ok(Generation {
            serving: self.clone(),
            payer: req.payer,
            model: req.model,
            prompt_text: req.prompt_text,
            target,
            id: sub.id,
            first: Some(first),
            events: sub.events,
            answer: String::new(),
            prompt_tokens: sub.prompt_tokens,
            sent_tokens: 0,
            streamed: true,
            fee_hold: sub.admission.take(),
            ended: false,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Resolves a request's `model`: the base model's name (its GGUF name,
    /// or the name it is registered under on the ledger, `trib models
    /// register NAME`) or id, or a registered adapter of this base by id or
    /// name. `None`: unknown.
    pub(crate) fn resolve(&self, model: &str) -> Result<Option<Target>, String> {
        let ledger = self.chain.ledger();
        let registered_base = || -> Result<bool, String> {
            Ok(ledger
                .base_model(&self.base_id)
                .map_err(|e| e.to_string())?
                .is_some_and(|b| b.name == model))
        };
        if model == self.base_name || model == self.base_id.to_string() || registered_base()? {
            return Ok(Some(Target {
                adapter: None,
                datanets: Vec::new(),
            }));
        }
        let found = match model.parse::<AdapterId>() {
            Ok(id) => ledger.adapter(&id).map_err(|e| e.to_string())?,
            Err(_) => ledger
                .adapters()
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|a| a.name == model && a.base == self.base_id),
        };
        let Some(a) = found.filter(|a| a.base == self.base_id) else {
            return Ok(None);
        };
        let name = AdapterName::parse(&a.id.to_string()).map_err(|e| e.to_string())?;
        Ok(Some(Target {
            adapter: Some((a.id, name)),
            datanets: a.datanets,
        }))
    }

    /// Steps 4 to 6: attributes an answer, settles it through the sink with
    /// the attributed weights (empty weights, the ledger's fallback, when
    /// nothing cleared the thresholds) and keeps it with its evidence.
    /// Blocking: call it from `spawn_blocking`. The answer is charged once:
    /// a failed trace settles with the fallback rule instead of failing the
    /// request.
    pub(crate) fn settle_answer(&self, a: AnswerToSettle<'_>) -> Result<SettledAnswer, String> {
        let adapter = a.target.adapter.as_ref().map(|(id, _)| *id);
        let attributed =
            self.attribution
                .attribute(&a.target.datanets, adapter.as_ref(), a.prompt, a.answer);
        let settled = self.sink.settle(Charge {
            payer: a.payer,
            adapter,
            base: self.base_id,
            prompt_tokens: a.prompt_tokens,
            completion_tokens: a.completion_tokens,
            weights: attributed.weights.clone(),
            method: attributed.method,
            evidence_hash: attributed.evidence_hash,
            datanets: attributed.datanets.clone(),
        })?;
        if let Some(t) = &attributed.trace {
            tracing::info!(target: "trib::attribution", receipt = %settled.receipt, method = attributed.method,
                spans = t.evidence.spans.len(), contributions = t.evidence.weights.len(),
                trace_us = t.elapsed.as_micros() as u64, "answer attributed");
        }
        let stored = attributed.stored(settled.receipt, a.model, a.prompt, a.answer);
        if let Err(e) = self.store_answer(&stored) {
            tracing::warn!(target: "trib::serving", receipt = %settled.receipt, error = %e, "answer not stored");
        }
        Ok(SettledAnswer {
            settled,
            evidence_hash: attributed.evidence_hash,
            method: attributed.method,
            trace: attributed.trace,
            trace_error: attributed.trace_error,
        })
    }

    /// Re-runs the attribution of a stored answer and checks it against
    /// `receipt` and the fee split read now
    /// ([`AnswerAttributor::verify`]). Blocking.
    pub(crate) fn verify(
        &self,
        stored: &StoredAnswer,
        receipt: &InferenceReceipt,
    ) -> Result<(), Vec<String>> {
        let split = self
            .chain
            .ledger()
            .params()
            .map(|p| p.fee_split)
            .map_err(|e| e.to_string());
        self.attribution.verify(stored, receipt, split)
    }

    /// Keeps the prompt and answer of a receipt.
    pub(crate) fn store_answer(&self, a: &StoredAnswer) -> std::io::Result<()> {
        // Prompts and answers are private (owner-only files and folder).
        crate::private::create_private_dir(&self.receipts_dir)?;
        let path = answer_path(&self.receipts_dir, &a.receipt);
        crate::private::write_private(
            &path,
            &serde_json::to_vec_pretty(a).expect("answer serialises"),
        )
    }
}

/// An admitted request being generated: the engine's events, the fee
/// reserved at admission, and what settlement needs. Settles exactly once:
/// when the engine says the answer is done, or, dropped before that (the
/// client went away), for the tokens already sent.
pub(crate) struct Generation {
    serving: Arc<Serving>,
    payer: Address,
    model: String,
    prompt_text: String,
    target: Target,
    /// The engine's request id.
    pub(crate) id: u64,
    /// The first event, read at admission.
    first: Option<StreamEvent>,
    /// The engine's events; dropping them cancels the request there.
    events: UnboundedReceiver<StreamEvent>,
    /// The text so far.
    answer: String,
    /// Prompt tokens (after the template).
    prompt_tokens: usize,
    /// Generated tokens handed to the caller so far.
    sent_tokens: usize,
    /// Whether each token reaches the client as it comes (streaming);
    /// [`Generation::finish`] clears it: a whole answer that never reached
    /// its client is not charged.
    streamed: bool,
    /// The fee reserved at admission (billing.rs): held until the answer's
    /// settlement is in the mempool, released on drop.
    fee_hold: Option<AdmissionToken>,
    /// Whether the request ended (done, failed or closed): settled, or
    /// nothing to settle.
    ended: bool,
    /// Where a dropped request's settlement runs.
    runtime: tokio::runtime::Handle,
}

/// Everything settling one answer needs, owned, so that it can run on the
/// blocking pool, also after the request is gone.
struct SettleJob {
    serving: Arc<Serving>,
    payer: Address,
    target: Target,
    model: String,
    prompt: String,
    answer: String,
    usage: Usage,
    /// Released once the settlement is in the mempool (or failed).
    fee_hold: Option<AdmissionToken>,
}

impl SettleJob {
    /// Steps 4 to 6 (blocking), then the reservation is released: the
    /// submitted settlement is counted from the mempool until its block
    /// commits.
    fn run(self) -> Result<SettledAnswer, ServingError> {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let settled = self
            .serving
            .settle_answer(AnswerToSettle {
                payer: self.payer,
                target: &self.target,
                model: &self.model,
                prompt: &self.prompt,
                answer: &self.answer,
                prompt_tokens: clamp(self.usage.prompt_tokens),
                completion_tokens: clamp(self.usage.completion_tokens),
            })
            .map_err(ServingError::Settlement);
        drop(self.fee_hold);
        settled
    }
}

impl Generation {
    /// Step 3, and at the end steps 4 to 6: the next event of the request.
    /// `Done` carries the settlement of the whole answer; `None` once the
    /// request ended (or the engine closed its stream, which settles
    /// nothing).
    pub(crate) async fn next(&mut self) -> Option<AnswerEvent> {
        if self.ended {
            return None;
        }
        let ev = match self.first.take() {
            Some(ev) => Some(ev),
            None => self.events.recv().await,
        };
        match ev {
            Some(StreamEvent::Delta { token, text }) => {
                self.sent_tokens += usize::from(token.is_some());
                self.answer.push_str(&text);
                Some(AnswerEvent::Delta(text))
            }
            Some(StreamEvent::Done(completion)) => {
                self.ended = true;
                let job = self.job(completion.usage);
                let settled = tokio::task::spawn_blocking(move || job.run())
                    .await
                    .map_err(|e| ServingError::SettlementTask(e.to_string()))
                    .and_then(|r| r);
                Some(AnswerEvent::Done {
                    completion,
                    settled: Box::new(settled),
                })
            }
            Some(StreamEvent::Error(e)) => {
                // Tokens already sent were served: they are paid.
                self.settle_sent("failed");
                Some(AnswerEvent::Failed(e))
            }
            None => {
                self.settle_sent("closed");
                None
            }
        }
    }

    /// Runs the request to its end: the whole answer, settled.
    pub(crate) async fn finish(mut self) -> Result<PaidAnswer, ServingError> {
        self.streamed = false;
        loop {
            match self.next().await {
                Some(AnswerEvent::Delta(_)) => {}
                Some(AnswerEvent::Done {
                    completion,
                    settled,
                }) => {
                    return Ok(PaidAnswer {
                        answer: std::mem::take(&mut self.answer),
                        completion,
                        settled: (*settled)?,
                    })
                }
                Some(AnswerEvent::Failed(e)) => return Err(e.into()),
                None => return Err(ServeError::ShuttingDown.into()),
            }
        }
    }

    /// The settlement of the answer so far for `usage`; the request has
    /// ended.
    fn job(&mut self, usage: Usage) -> SettleJob {
        self.ended = true;
        SettleJob {
            serving: self.serving.clone(),
            payer: self.payer,
            target: self.target.clone(),
            model: self.model.clone(),
            prompt: self.prompt_text.clone(),
            answer: self.answer.clone(),
            usage,
            fee_hold: self.fee_hold.take(),
        }
    }

    /// Ends the request before the engine said done, settling the tokens
    /// sent so far in the background (none sent, or a whole answer that
    /// never reached its client: nothing is charged). At most once: later
    /// calls find it ended.
    fn settle_sent(&mut self, why: &'static str) {
        if self.ended {
            return;
        }
        let usage = Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.sent_tokens,
        };
        let job = self.job(usage);
        if usage.completion_tokens == 0 || !self.streamed {
            tracing::debug!(target: "trib::serving", id = self.id, why, streamed = self.streamed,
                "request ended before any token reached its client: nothing charged");
            return;
        }
        let id = self.id;
        tracing::info!(target: "trib::serving", id, why, completion_tokens = usage.completion_tokens,
            "request ended early: settling the tokens sent");
        // Not awaited: the caller is gone; the blocking pool runs it to the
        // end even while the runtime shuts down.
        self.runtime.spawn_blocking(move || match job.run() {
            Ok(s) => {
                tracing::info!(target: "trib::serving", id, receipt = %s.settled.receipt, fee = %s.settled.fee,
                    "partial answer settled")
            }
            Err(e) => {
                tracing::warn!(target: "trib::serving", id, error = %e, "partial answer not settled")
            }
        });
    }
}

impl Drop for Generation {
    /// The client went away before the engine said done (the SSE stream or
    /// the handler's future was dropped): the engine cancels the request
    /// when `events` drops right after this, and the tokens sent are paid.
    fn drop(&mut self) {
        self.settle_sent("client gone");
    }
}

/// The adapter store `[serving] adapter_store` names (an object store URL;
/// its options, as for the datanet content store, from
/// [`crate::config::store_options`]: the `AWS_*` variables in `vars`,
/// lower-cased, then `[serving] adapter_store_options`), or the home's
/// `adapters/` directory.
fn adapter_store(
    home: &NodeHome,
    serving: &crate::config::ServingConfig,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Arc<dyn AdapterStore>, String> {
    let Some(url) = serving.adapter_store.as_deref() else {
        let dir = home.root().join("adapters");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        return Ok(Arc::new(LocalDirStore::new(dir)));
    };
    let options = crate::config::store_options(&serving.adapter_store_options, vars);
    let store = ObjectAdapterStore::from_url(url, options)
        .map_err(|e| format!("[serving] adapter_store: {e}"))?;
    tracing::info!(target: "trib::serving", url, "adapters come from an object store");
    Ok(Arc::new(store))
}

/// Where the prompt and answer of `receipt` are kept.
pub(crate) fn answer_path(receipts_dir: &Path, receipt: &ReceiptId) -> PathBuf {
    receipts_dir.join(format!("{receipt}.json"))
}

/// `<home>/receipts`: the prompt and answer of each receipt this node served.
pub(crate) fn receipts_dir(home: &NodeHome) -> PathBuf {
    home.root().join("receipts")
}

#[cfg(test)]
#[path = "serving_tests.rs"]
mod tests;
