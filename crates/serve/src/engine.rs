//! The continuous-batching engine: one scheduler thread over one model.
//!
//! Requests enter through an [`EngineHandle`] (cheap to clone, callable from
//! async code: admission checks run on the caller's thread and return at once;
//! output streams back over a tokio channel). The scheduler thread repeats a
//! *step*:
//!
//! 1. take new requests and cancellations (a dropped receiver cancels);
//! 2. start the adapter loads they need (on the cache's loader threads — a
//!    request whose adapter is loading waits without blocking anyone);
//! 3. admit waiting requests, in arrival order among those whose adapter is
//!    ready, while fewer than `max_running` sequences run;
//! 4. spend the step's token budget: every decoding sequence costs one token
//!    and all of them go through **one** `decode_batch` call, whatever their
//!    adapters; what is left of the budget prefills prompt chunks, oldest
//!    sequence first (chunked prefill: a 2,000-token prompt is spread over
//!    several steps instead of stalling the running decodes, as in Sarathi-Serve);
//! 5. sample, stream text, finish sequences (stop token, stop string,
//!    `max_tokens`, context full) and report usage.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::cache::{Acquire, AdapterCache, CacheConfig, CacheStats, LoadTicket, PinnedAdapter};
use crate::error::ServeError;
use crate::limits::{EngineLimits, RateLimiter};
use crate::metrics::EngineMetrics;
use crate::model::{BatchModel, ChatMessage, DecodeSlot, ModelError};
use crate::name::AdapterName;
use crate::sampling::{Sampler, SamplingParams};
use crate::store::AdapterStore;

/// The smallest prefill chunk per step, even when decodes use the whole
/// budget, so prompts always make progress.
const MIN_PREFILL_CHUNK: usize = 16;

/// What to complete.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Raw text (`/v1/completions`).
    Text(String),
    /// Pre-tokenized prompt.
    Tokens(Vec<u32>),
    /// Chat messages, rendered with the model's chat template (`/v1/chat/completions`).
    Chat(Vec<ChatMessage>),
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// The adapter to apply, or `None` for the base model.
    pub adapter: Option<AdapterName>,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Completion token limit; `None` means the engine default, capped by
    /// the context left after the prompt.
    pub max_tokens: Option<usize>,
    /// Strings that end the completion (not included in the output).
    pub stop: Vec<String>,
    /// Opaque rate-limit key (the API key's account); `None` is not limited.
    pub rate_key: Option<String>,
}

impl GenerateRequest {
    /// A request with default sampling and no adapter.
    pub fn new(prompt: Prompt) -> Self {
        Self {
            prompt,
            adapter: None,
            sampling: SamplingParams::default(),
            max_tokens: None,
            stop: Vec::new(),
            rate_key: None,
        }
    }
}

/// Token counts of one request, for the fee.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Prompt tokens (after the chat template).
    pub prompt_tokens: usize,
    /// Generated tokens, including a final stop token.
    pub completion_tokens: usize,
}

impl Usage {
    /// Prompt plus completion tokens.
    pub fn total_tokens(&self) -> usize {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Why a completion ended (OpenAI `finish_reason`).
///
/// Not `trib_model::FinishReason`, on purpose: that one also has
/// `Cancelled`, for a `generate` call stopped by its callback. A request
/// cancelled here (its output stream dropped) ends without a [`Completion`],
/// so this enum holds only the values OpenAI defines and the HTTP layer
/// serialises it as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token or stop string.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
}

/// The end of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Tokens counted for the fee.
    pub usage: Usage,
}

/// What a request's stream carries.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// New output: the token just generated (absent in a final flush) and the
    /// text it completed (may be empty while a multi-byte character or a
    /// possible stop string is still being held back).
    Delta {
        /// The generated token, if this delta comes from one.
        token: Option<u32>,
        /// New text.
        text: String,
    },
    /// The request finished; always the last event on success.
    Done(Completion),
    /// The request failed; always the last event. Before any `Delta` it means
    /// nothing was generated (and nothing should be charged).
    Error(ServeError),
}

/// What the admission check sees (the node checks the account can pay the
/// largest possible fee: `prompt_tokens × price_in + max_tokens × price_out`).
#[derive(Debug, Clone, Copy)]
pub struct AdmissionInfo<'a> {
    /// The request's rate key (the API key's account), if any.
    pub rate_key: Option<&'a str>,
    /// The adapter asked for.
    pub adapter: Option<&'a AdapterName>,
    /// Prompt tokens after the template.
    pub prompt_tokens: usize,
    /// The completion limit the request will run with.
    pub max_tokens: usize,
}

/// Whatever an [`AdmissionCheck`] wants to keep for as long as the request
/// lives (the node's fee reservation). The engine hands it back in
/// [`Submission::admission`]; the caller drops it when it is done with the
/// request, and the engine drops it itself when the request is refused after
/// the check (queue full, engine stopped).
pub type AdmissionToken = Box<dyn std::any::Any + Send + Sync>;

/// A check run before a request is queued; an `Err` refuses it with HTTP 402
/// before any compute is spent.
pub trait AdmissionCheck: Send + Sync + 'static {
    /// `Ok` to admit, `Err(reason)` to refuse.
    fn check(&self, info: &AdmissionInfo<'_>) -> Result<(), String>;

    /// Like [`check`](Self::check), returning a token the request carries
    /// (for example a reservation released when the token drops). The
    /// engine calls this one; the default runs `check` and keeps nothing.
    fn admit(&self, info: &AdmissionInfo<'_>) -> Result<Option<AdmissionToken>, String> {
        self.check(info).map(|()| None)
    }
}

impl<F> AdmissionCheck for F
where
    F: Fn(&AdmissionInfo<'_>) -> Result<(), String> + Send + Sync + 'static,
{
    fn check(&self, info: &AdmissionInfo<'_>) -> Result<(), String> {
        self(info)
    }
}

/// Engine configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// Limits and scheduling knobs.
    pub limits: EngineLimits,
    /// Adapter cache.
    pub cache: CacheConfig,
}

/// A queued request: its id, prompt size and output stream.
#[derive(Debug)]
pub struct Submission {
    /// Engine-assigned request id.
    pub id: u64,
    /// Prompt tokens (after the template): known before any compute.
    pub prompt_tokens: usize,
    /// The completion limit the request runs with.
    pub max_tokens: usize,
    /// The output stream; dropping it cancels the request.
    pub events: UnboundedReceiver<StreamEvent>,
    /// What the admission check kept for this request (see
    /// [`AdmissionToken`]); hold it until the request is paid for.
    pub admission: Option<AdmissionToken>,
}

/// A finished request, collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Generated text.
    pub text: String,
    /// Generated token ids.
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
}

impl Submission {
    fn fold(
        out: &mut (String, Vec<u32>),
        ev: StreamEvent,
    ) -> Option<Result<Completion, ServeError>> {
        match ev {
            StreamEvent::Delta { token, text } => {
                out.0.push_str(&text);
                out.1.extend(token);
                None
            }
            StreamEvent::Done(c) => Some(Ok(c)),
            StreamEvent::Error(e) => Some(Err(e)),
        }
    }

    /// Waits for the whole completion.
    pub async fn collect(mut self) -> Result<Output, ServeError> {
        let mut acc = (String::new(), Vec::new());
        while let Some(ev) = self.events.recv().await {
            if let Some(r) = Self::fold(&mut acc, ev) {
                let c = r?;
                return Ok(Output {
                    text: acc.0,
                    tokens: acc.1,
                    finish_reason: c.finish_reason,
                    usage: c.usage,
                });
            }
        }
        Err(ServeError::ShuttingDown)
    }

    /// Waits for the whole completion, blocking the thread (not for async code).
    pub fn collect_blocking(mut self) -> Result<Output, ServeError> {
        let mut acc = (String::new(), Vec::new());
        while let Some(ev) = self.events.blocking_recv() {
            if let Some(r) = Self::fold(&mut acc, ev) {
                let c = r?;
                return Ok(Output {
                    text: acc.0,
                    tokens: acc.1,
                    finish_reason: c.finish_reason,
                    usage: c.usage,
                });
            }
        }
        Err(ServeError::ShuttingDown)
    }
}

/// Static facts about the served model (for `GET /v1/models`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelInfo {
    /// Base model name.
    pub name: String,
    /// Context length.
    pub context_len: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
}

/// Scheduler counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineStats {
    /// Sequences in the running batch now.
    pub running: usize,
    /// Requests waiting now.
    pub queued: usize,
    /// Scheduler steps run.
    pub steps: u64,
    /// `decode_batch` calls made.
    pub decode_calls: u64,
    /// Sequence-steps decoded (sum of batch sizes).
    pub decoded_tokens: u64,
    /// Prompt tokens prefilled.
    pub prefill_tokens: u64,
    /// Largest decode batch seen.
    pub max_batch: usize,
    /// Largest number of distinct adapters (base counts as one) in one decode batch.
    pub max_adapters_in_batch: usize,
    /// Requests finished normally.
    pub completed: u64,
    /// Requests cancelled by their client.
    pub cancelled: u64,
    /// Requests that failed after admission.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    running: AtomicUsize,
    steps: AtomicU64,
    decode_calls: AtomicU64,
    decoded_tokens: AtomicU64,
    prefill_tokens: AtomicU64,
    max_batch: AtomicUsize,
    max_adapters: AtomicUsize,
    completed: AtomicU64,
    cancelled: AtomicU64,
    failed: AtomicU64,
}

/// The engine: a namespace for [`Engine::start`].
#[derive(Debug)]
pub struct Engine;

impl Engine {
    /// Starts the scheduler thread and the adapter loader threads for `model`
    /// over `store`. The engine stops when the last handle is dropped.
    pub fn start<M: BatchModel>(
        model: Arc<M>,
        store: Arc<dyn AdapterStore>,
        config: EngineConfig,
    ) -> EngineHandle {
        Self::start_with_check(model, store, config, None)
    }

    /// Like [`start`](Self::start) with an admission check (the node's
    /// balance check, HTTP 402 on refusal).
    pub fn start_with_check<M: BatchModel>(
        model: Arc<M>,
        store: Arc<dyn AdapterStore>,
        config: EngineConfig,
        check: Option<Arc<dyn AdmissionCheck>>,
    ) -> EngineHandle {
        let loader_model = model.clone();
        let cache = AdapterCache::new(
            config.cache,
            store,
            move |files: &crate::store::AdapterFiles| {
                let a = loader_model.load_adapter(files)?;
                let bytes = loader_model.adapter_bytes(&a);
                Ok((a, bytes))
            },
        );
        let (tx, rx) = mpsc::channel::<Command<M>>();
        let wake = Mutex::new(tx.clone());
        cache.set_waker(Arc::new(move || {
            let _ = wake.lock().expect("waker").send(Command::Wake);
        }));
        let inner = Arc::new(Inner {
            stop_tokens: model.stop_tokens(),
            model,
            cache,
            limits: config.limits,
            rate: RateLimiter::new(config.limits.rate_per_sec, config.limits.rate_burst),
            check,
            queued: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            tx: Mutex::new(tx),
            counters: Counters::default(),
            metrics: EngineMetrics::default(),
        });
        let thread_inner = inner.clone();
        let scheduler = std::thread::Builder::new()
            .name("trib-engine".into())
            .spawn(move || Scheduler::new(thread_inner).run(rx))
            .expect("spawn engine thread");
        tracing::info!(target: "trib::serve", limits = ?config.limits, cache = ?config.cache, "engine started");
        EngineHandle {
            core: Arc::new(HandleCore {
                frontend: inner,
                scheduler: Mutex::new(Some(scheduler)),
            }),
        }
    }
}

/// The async-friendly handle the HTTP layer calls. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    core: Arc<HandleCore>,
}

struct HandleCore {
    frontend: Arc<dyn Frontend>,
    /// The scheduler thread, until [`EngineHandle::shutdown`] joins it.
    scheduler: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for HandleCore {
    fn drop(&mut self) {
        self.frontend.shutdown();
    }
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("model", &self.core.frontend.info().name)
            .finish()
    }
}

impl EngineHandle {
    /// Checks and queues a request. Returns at once: refusals (400, 402, 429)
    /// come back here; adapter problems (404, 422) and model failures come as
    /// the stream's `Error` event.
    pub fn submit(&self, req: GenerateRequest) -> Result<Submission, ServeError> {
        self.core.frontend.submit(req)
    }

    /// Submits and waits for the whole completion.
    pub async fn generate(&self, req: GenerateRequest) -> Result<Output, ServeError> {
        self.submit(req)?.collect().await
    }

    /// Adapter cache state (`GET /v1/adapters`).
    pub fn adapters(&self) -> CacheStats {
        self.core.frontend.cache_stats()
    }

    /// Adapters available in the store.
    pub fn store_adapters(&self) -> Result<Vec<AdapterName>, ServeError> {
        self.core.frontend.list_store()
    }

    /// Loads an adapter explicitly (`POST /v1/adapters`) and waits for it.
    pub async fn load_adapter(&self, name: &AdapterName) -> Result<(), ServeError> {
        let t = self.core.frontend.load(name)?;
        t.wait_async().await.map_err(ServeError::from)
    }

    /// Starts loading an adapter and returns its ticket (for blocking callers).
    pub fn start_adapter_load(&self, name: &AdapterName) -> Result<Arc<LoadTicket>, ServeError> {
        self.core.frontend.load(name)
    }

    /// Unloads an adapter; refused while running sequences use it. Returns the bytes freed.
    pub fn unload_adapter(&self, name: &AdapterName) -> Result<usize, ServeError> {
        self.core.frontend.unload(name)
    }

    /// The served base model.
    pub fn model_info(&self) -> ModelInfo {
        self.core.frontend.info()
    }

    /// Scheduler counters.
    pub fn stats(&self) -> EngineStats {
        self.core.frontend.stats()
    }

    /// The Prometheus histograms and token counters the scheduler updates
    /// (clones share the values).
    pub fn metrics(&self) -> EngineMetrics {
        self.core.frontend.metrics()
    }

    /// Stops the engine and waits for its threads: the scheduler finishes
    /// its current step, fails every waiting and running request with
    /// [`ServeError::ShuttingDown`] and exits; the adapter loader threads
    /// finish their current load and exit. When this returns no engine
    /// thread runs and none holds the model, the store or the admission
    /// check (what they reach, such as a ledger, can be closed). Later
    /// submissions get `ShuttingDown`. Blocking: call it off async workers.
    /// Idempotent; dropping the last handle also stops the engine, without
    /// waiting.
    pub fn shutdown(&self) {
        self.core.frontend.shutdown();
        let scheduler = self
            .core
            .scheduler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = scheduler {
            if t.join().is_err() {
                tracing::error!(target: "trib::serve", "the scheduler thread panicked");
            }
        }
        self.core.frontend.close_loaders();
        tracing::info!(target: "trib::serve", "engine threads joined");
    }
}

/// The type-erased face of `Inner<M>`, so the handle is not generic.
trait Frontend: Send + Sync {
    fn submit(&self, req: GenerateRequest) -> Result<Submission, ServeError>;
    fn cache_stats(&self) -> CacheStats;
    fn list_store(&self) -> Result<Vec<AdapterName>, ServeError>;
    fn load(&self, name: &AdapterName) -> Result<Arc<LoadTicket>, ServeError>;
    fn unload(&self, name: &AdapterName) -> Result<usize, ServeError>;
    fn info(&self) -> ModelInfo;
    fn stats(&self) -> EngineStats;
    fn metrics(&self) -> EngineMetrics;
    fn shutdown(&self);
    fn close_loaders(&self);
}

enum Command<M: BatchModel> {
    Submit(Box<Seq<M>>),
    Wake,
    Shutdown,
}

struct Inner<M: BatchModel> {
    model: Arc<M>,
    stop_tokens: Vec<u32>,
    cache: Arc<AdapterCache<M::Adapter>>,
    limits: EngineLimits,
    rate: RateLimiter,
    check: Option<Arc<dyn AdmissionCheck>>,
    queued: AtomicUsize,
    next_id: AtomicU64,
    tx: Mutex<mpsc::Sender<Command<M>>>,
    counters: Counters,
    metrics: EngineMetrics,
}

impl<M: BatchModel> Inner<M> {
    /// The request's sizes against the limits, before any tokenizing or
    /// admission work: stop strings (count, length, not empty) and the
    /// prompt's bytes.
    fn check_sizes(&self, req: &GenerateRequest) -> Result<(), ServeError> {
        let limits = &self.limits;
        let invalid = |reason: String| Err(ServeError::InvalidRequest { reason });
        if req.stop.len() > limits.max_stop_strings {
            return invalid(format!(
                "{} stop strings given; this node accepts at most {} (max_stop_strings)",
                req.stop.len(),
                limits.max_stop_strings
            ));
        }
        for s in &req.stop {
            if s.is_empty() {
                return invalid(format!("stop string {s:?} is empty"));
            }
            if s.len() > limits.max_stop_bytes {
                return invalid(format!(
                    "a stop string is {} bytes; this node accepts at most {} (max_stop_bytes)",
                    s.len(),
                    limits.max_stop_bytes
                ));
            }
        }
        let bytes = match &req.prompt {
            Prompt::Text(t) => t.len(),
            Prompt::Chat(msgs) => msgs
                .iter()
                .map(|m| m.role.len().saturating_add(m.content.len()))
                .fold(0usize, usize::saturating_add),
            Prompt::Tokens(t) => t.len().saturating_mul(std::mem::size_of::<u32>()),
        };
        if bytes > limits.max_prompt_bytes {
            return invalid(format!(
                "the prompt is {bytes} bytes; this node accepts at most {} (max_prompt_bytes)",
                limits.max_prompt_bytes
            ));
        }
        Ok(())
    }

    fn tokenize(&self, prompt: &Prompt) -> Result<Vec<u32>, ServeError> {
        let invalid = |reason: String| ServeError::InvalidRequest { reason };
        let tokens = match prompt {
            Prompt::Text(t) => self
                .model
                .encode(t)
                .map_err(|e| invalid(format!("cannot tokenize the prompt: {e}")))?,
            Prompt::Chat(msgs) => {
                if msgs.is_empty() {
                    return Err(invalid("`messages` is empty".into()));
                }
                let text = self
                    .model
                    .chat_prompt(msgs)
                    .map_err(|e| invalid(format!("cannot render the chat: {e}")))?;
                self.model
                    .encode(&text)
                    .map_err(|e| invalid(format!("cannot tokenize the chat: {e}")))?
            }
            Prompt::Tokens(t) => {
                let vocab = self.model.vocab_size();
                if let Some(bad) = t.iter().find(|&&x| x as usize >= vocab) {
                    return Err(invalid(format!(
                        "prompt token id {bad} is outside the vocabulary (size {vocab})"
                    )));
                }
                t.clone()
            }
        };
        if tokens.is_empty() {
            return Err(invalid("the prompt is empty".into()));
        }
        Ok(tokens)
    }
}

impl<M: BatchModel> Frontend for Inner<M> {
    fn submit(&self, req: GenerateRequest) -> Result<Submission, ServeError> {
        if let Some(key) = &req.rate_key {
            self.rate
                .check(key, Instant::now())
                .map_err(|retry_after| ServeError::RateLimited { retry_after })?;
        }
        req.sampling
            .validate()
            .map_err(|reason| ServeError::InvalidRequest { reason })?;
        self.check_sizes(&req)?;
        let prompt = self.tokenize(&req.prompt)?;
        let context_len = self.model.context_len();
        let max_tokens = match req.max_tokens {
            Some(0) => {
                return Err(ServeError::InvalidRequest {
                    reason: "max_tokens must be at least 1".into(),
                })
            }
            Some(m) => m,
            None => self
                .limits
                .default_max_tokens
                .min(context_len.saturating_sub(prompt.len()))
                .max(1),
        };
        // Saturating: `max_tokens` comes from the client (up to u64::MAX).
        if prompt.len().saturating_add(max_tokens) > context_len {
            return Err(ServeError::ContextOverflow {
                prompt_tokens: prompt.len(),
                max_tokens,
                context_len,
            });
        }
        // Held from here on: dropped (released) on any refusal below.
        let admission = match &self.check {
            Some(check) => {
                let info = AdmissionInfo {
                    rate_key: req.rate_key.as_deref(),
                    adapter: req.adapter.as_ref(),
                    prompt_tokens: prompt.len(),
                    max_tokens,
                };
                check
                    .admit(&info)
                    .map_err(|reason| ServeError::PaymentRequired { reason })?
            }
            None => None,
        };
        let queued = self.queued.fetch_add(1, Ordering::SeqCst);
        if queued >= self.limits.max_queued {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(ServeError::QueueFull {
                queued,
                max_queued: self.limits.max_queued,
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sink, events) = unbounded_channel();
        let prompt_tokens = prompt.len();
        let seq = Box::new(Seq::new(id, prompt, &req, max_tokens, sink));
        if self
            .tx
            .lock()
            .expect("engine channel")
            .send(Command::Submit(seq))
            .is_err()
        {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(ServeError::ShuttingDown);
        }
        tracing::debug!(target: "trib::serve", id, prompt_tokens, max_tokens, adapter = ?req.adapter, "queued");
        Ok(Submission {
            id,
            prompt_tokens,
            max_tokens,
            events,
            admission,
        })
    }

    fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    fn list_store(&self) -> Result<Vec<AdapterName>, ServeError> {
        self.cache
            .store()
            .list()
            .map_err(|e| ServeError::StoreUnavailable {
                name: AdapterName::parse("store").expect("valid literal"),
                message: e.to_string(),
            })
    }

    fn load(&self, name: &AdapterName) -> Result<Arc<LoadTicket>, ServeError> {
        Ok(self.cache.load(name)?)
    }

    fn unload(&self, name: &AdapterName) -> Result<usize, ServeError> {
        Ok(self.cache.unload(name)?)
    }

    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: self.model.name().to_owned(),
            context_len: self.model.context_len(),
            vocab_size: self.model.vocab_size(),
        }
    }

    fn stats(&self) -> EngineStats {
        let c = &self.counters;
        // Acquire pairs with `drop_cancelled`'s release: counted as
        // cancelled means no longer counted as running.
        let cancelled = c.cancelled.load(Ordering::Acquire);
        EngineStats {
            running: c.running.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            steps: c.steps.load(Ordering::Relaxed),
            decode_calls: c.decode_calls.load(Ordering::Relaxed),
            decoded_tokens: c.decoded_tokens.load(Ordering::Relaxed),
            prefill_tokens: c.prefill_tokens.load(Ordering::Relaxed),
            max_batch: c.max_batch.load(Ordering::Relaxed),
            max_adapters_in_batch: c.max_adapters.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            cancelled,
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    fn metrics(&self) -> EngineMetrics {
        self.metrics.clone()
    }

    fn shutdown(&self) {
        let _ = self
            .tx
            .lock()
            .expect("engine channel")
            .send(Command::Shutdown);
    }

    fn close_loaders(&self) {
        self.cache.close();
    }
}

/// Where a waiting request's adapter stands.
enum AdapterWait<A: Send + Sync + 'static> {
    /// Base model: nothing to wait for.
    None,
    /// Not asked for yet (set when the request reaches the scheduler).
    NotRequested(AdapterName),
    /// Loading.
    Loading(Arc<LoadTicket>),
    /// Resident and pinned.
    Ready(PinnedAdapter<A>),
}

/// One request inside the scheduler.
struct Seq<M: BatchModel> {
    id: u64,
    prompt: Vec<u32>,
    prefilled: usize,
    generated: Vec<u32>,
    /// Sampled but not yet fed to the model.
    pending: Option<u32>,
    cache: Option<M::Cache>,
    adapter: AdapterWait<M::Adapter>,
    sampler: Sampler,
    max_tokens: usize,
    stop: Vec<String>,
    detok: Detokenizer,
    sink: UnboundedSender<StreamEvent>,
    arrived: Instant,
    /// When its last token was generated (time per output token).
    last_token: Option<Instant>,
}

impl<M: BatchModel> Seq<M> {
    fn new(
        id: u64,
        prompt: Vec<u32>,
        req: &GenerateRequest,
        max_tokens: usize,
        sink: UnboundedSender<StreamEvent>,
    ) -> Self {
        Self {
            id,
            prompt,
            prefilled: 0,
            generated: Vec::new(),
            pending: None,
            cache: None,
            adapter: match &req.adapter {
                Some(n) => AdapterWait::NotRequested(n.clone()),
                None => AdapterWait::None,
            },
            sampler: Sampler::new(req.sampling),
            max_tokens,
            stop: req.stop.clone(),
            detok: Detokenizer::default(),
            sink,
            arrived: Instant::now(),
            last_token: None,
        }
    }

    fn adapter_key(&self) -> Option<&AdapterName> {
        match &self.adapter {
            AdapterWait::Ready(p) => Some(p.name()),
            _ => None,
        }
    }

    fn ready_to_run(&self) -> bool {
        matches!(self.adapter, AdapterWait::None | AdapterWait::Ready(_))
    }

    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt.len(),
            completion_tokens: self.generated.len(),
        }
    }
}

/// What happened to a sequence in a step.
enum Fate {
    Continue,
    Finished(FinishReason),
    Failed(ServeError),
    Cancelled,
}

/// The scheduler thread's state.
struct Scheduler<M: BatchModel> {
    inner: Arc<Inner<M>>,
    waiting: VecDeque<Box<Seq<M>>>,
    running: Vec<Box<Seq<M>>>,
}

impl<M: BatchModel> Scheduler<M> {
    fn new(inner: Arc<Inner<M>>) -> Self {
        Self {
            inner,
            waiting: VecDeque::new(),
            running: Vec::new(),
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Command<M>>) {
        loop {
            // 1. Commands: block only when there is nothing to compute.
            let idle = self.running.is_empty() && !self.waiting.iter().any(|s| s.ready_to_run());
            let first = if idle {
                match rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => break,
                }
            } else {
                None
            };
            let mut shutdown = false;
            for cmd in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                match cmd {
                    Command::Submit(seq) => self.waiting.push_back(seq),
                    Command::Wake => {}
                    Command::Shutdown => shutdown = true,
                }
            }
            if shutdown {
                break;
            }
            self.drop_cancelled();
            self.advance_adapters();
            self.admit();
            if !self.running.is_empty() {
                self.step();
            }
        }
        for s in self.waiting.drain(..).chain(self.running.drain(..)) {
            let _ = s.sink.send(StreamEvent::Error(ServeError::ShuttingDown));
        }
        tracing::info!(target: "trib::serve", "engine stopped");
    }

    fn drop_cancelled(&mut self) {
        let c = &self.inner.counters;
        let before = self.waiting.len();
        self.waiting.retain(|s| !s.sink.is_closed());
        let gone = before - self.waiting.len();
        self.inner.queued.fetch_sub(gone, Ordering::SeqCst);
        let before = self.running.len();
        self.running.retain(|s| {
            let keep = !s.sink.is_closed();
            if !keep {
                tracing::debug!(target: "trib::serve", id = s.id, "cancelled by client");
            }
            keep
        });
        let gone = gone + before - self.running.len();
        // `running` first: a reader that sees the cancellation also sees the
        // sequence gone (the two are separate counters, read separately).
        c.running.store(self.running.len(), Ordering::Release);
        c.cancelled.fetch_add(gone as u64, Ordering::Release);
    }

    /// Starts loads for new requests and picks up finished ones.
    fn advance_adapters(&mut self) {
        let cache = &self.inner.cache;
        let mut failed = Vec::new();
        for (i, s) in self.waiting.iter_mut().enumerate() {
            let next = match &s.adapter {
                AdapterWait::NotRequested(n) => Some(cache.acquire(n)),
                AdapterWait::Loading(t) => match t.outcome() {
                    None => None,
                    Some(Ok(())) => Some(cache.acquire_after_load(t.name())),
                    Some(Err(e)) => Some(Err(e)),
                },
                _ => None,
            };
            match next {
                None => {}
                Some(Ok(Acquire::Ready(p))) => s.adapter = AdapterWait::Ready(p),
                Some(Ok(Acquire::Loading(t))) => s.adapter = AdapterWait::Loading(t),
                Some(Err(e)) => failed.push((i, ServeError::from(e))),
            }
        }
        for (i, e) in failed.into_iter().rev() {
            let s = self.waiting.remove(i).expect("index from enumerate");
            self.inner.queued.fetch_sub(1, Ordering::SeqCst);
            self.inner.counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "trib::serve", id = s.id, error = %e, "request refused");
            let _ = s.sink.send(StreamEvent::Error(e));
        }
    }

    /// Moves ready waiting requests into the running batch, oldest first.
    fn admit(&mut self) {
        let max = self.inner.limits.max_running;
        let mut i = 0;
        while self.running.len() < max && i < self.waiting.len() {
            if self.waiting[i].ready_to_run() {
                let mut s = self.waiting.remove(i).expect("index checked");
                s.cache = Some(self.inner.model.new_cache());
                self.inner.queued.fetch_sub(1, Ordering::SeqCst);
                tracing::debug!(target: "trib::serve", id = s.id,
                    waited_ms = s.arrived.elapsed().as_secs_f64() * 1e3, "admitted");
                self.running.push(s);
            } else {
                i += 1;
            }
        }
        self.inner
            .counters
            .running
            .store(self.running.len(), Ordering::Relaxed);
    }

    /// One scheduler step: one batched decode over every decoding sequence,
    /// then prefill chunks within the remaining token budget.
    fn step(&mut self) {
        let inner = self.inner.clone();
        let c = &inner.counters;
        c.steps.fetch_add(1, Ordering::Relaxed);
        let mut fates: Vec<Fate> = (0..self.running.len()).map(|_| Fate::Continue).collect();

        // Decode: every sequence with a pending token, in one call.
        let decoding: Vec<usize> = (0..self.running.len())
            .filter(|&i| self.running[i].pending.is_some())
            .collect();
        if !decoding.is_empty() {
            let mut distinct: Vec<Option<&AdapterName>> = decoding
                .iter()
                .map(|&i| self.running[i].adapter_key())
                .collect();
            distinct.sort();
            distinct.dedup();
            c.max_adapters.fetch_max(distinct.len(), Ordering::Relaxed);
            c.max_batch.fetch_max(decoding.len(), Ordering::Relaxed);
            c.decode_calls.fetch_add(1, Ordering::Relaxed);
            c.decoded_tokens
                .fetch_add(decoding.len() as u64, Ordering::Relaxed);
            let result = {
                let mut slots: Vec<DecodeSlot<'_, M::Cache, M::Adapter>> =
                    Vec::with_capacity(decoding.len());
                let mut want = decoding.iter().peekable();
                for (i, s) in self.running.iter_mut().enumerate() {
                    if want.peek() == Some(&&i) {
                        want.next();
                        let adapter = match &s.adapter {
                            AdapterWait::Ready(p) => Some(p.adapter()),
                            _ => None,
                        };
                        slots.push(DecodeSlot {
                            token: s
                                .pending
                                .take()
                                .expect("decoding sequences have a pending token"),
                            cache: s.cache.as_mut().expect("running sequences have a cache"),
                            adapter,
                        });
                    }
                }
                let model = &self.inner.model;
                std::panic::catch_unwind(AssertUnwindSafe(|| model.decode_batch(&mut slots)))
                    .unwrap_or_else(|_| Err(ModelError("decode_batch panicked".into())))
            };
            match result {
                Ok(logits) if logits.len() == decoding.len() => {
                    for (&i, l) in decoding.iter().zip(logits) {
                        fates[i] = self.emit(i, &l);
                    }
                }
                Ok(logits) => {
                    let e = ServeError::Model {
                        message: format!(
                            "decode_batch returned {} rows for {} sequences",
                            logits.len(),
                            decoding.len()
                        ),
                    };
                    decoding
                        .iter()
                        .for_each(|&i| fates[i] = Fate::Failed(e.clone()));
                }
                Err(e) => {
                    let e = ServeError::Model { message: e.0 };
                    decoding
                        .iter()
                        .for_each(|&i| fates[i] = Fate::Failed(e.clone()));
                }
            }
        }

        // Prefill: the rest of the budget, oldest sequence first.
        let budget = self.inner.limits.step_token_budget;
        let mut left = budget.saturating_sub(decoding.len()).max(MIN_PREFILL_CHUNK);
        #[allow(clippy::needless_range_loop)] // `emit` needs `&mut self` with the index
        for i in 0..self.running.len() {
            if left == 0 {
                break;
            }
            let s = &mut self.running[i];
            if s.prefilled >= s.prompt.len() || !matches!(fates[i], Fate::Continue) {
                continue;
            }
            let end = (s.prefilled + left).min(s.prompt.len());
            let chunk_len = end - s.prefilled;
            left -= chunk_len;
            let model = &self.inner.model;
            let result = {
                let adapter = match &s.adapter {
                    AdapterWait::Ready(p) => Some(p.adapter()),
                    _ => None,
                };
                let cache = s.cache.as_mut().expect("running sequences have a cache");
                let chunk = &s.prompt[s.prefilled..end];
                std::panic::catch_unwind(AssertUnwindSafe(|| model.prefill(chunk, cache, adapter)))
                    .unwrap_or_else(|_| Err(ModelError("prefill panicked".into())))
            };
            c.prefill_tokens
                .fetch_add(chunk_len as u64, Ordering::Relaxed);
            self.inner.metrics.prompt_tokens.inc_by(chunk_len as u64);
            match result {
                Ok(logits) => {
                    s.prefilled = end;
                    if end == s.prompt.len() {
                        fates[i] = self.emit(i, &logits);
                    }
                }
                Err(e) => fates[i] = Fate::Failed(ServeError::Model { message: e.0 }),
            }
        }

        // Retire finished, failed and cancelled sequences.
        let mut keep = Vec::with_capacity(self.running.len());
        for (s, fate) in self.running.drain(..).zip(fates) {
            match fate {
                Fate::Continue => keep.push(s),
                Fate::Finished(reason) => {
                    c.completed.fetch_add(1, Ordering::Relaxed);
                    let usage = s.usage();
                    tracing::debug!(target: "trib::serve", id = s.id, ?reason, ?usage, "finished");
                    let _ = s.sink.send(StreamEvent::Done(Completion {
                        finish_reason: reason,
                        usage,
                    }));
                }
                Fate::Failed(e) => {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target: "trib::serve", id = s.id, error = %e, "sequence failed");
                    let _ = s.sink.send(StreamEvent::Error(e));
                }
                Fate::Cancelled => {
                    c.cancelled.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.running = keep;
        c.running.store(self.running.len(), Ordering::Relaxed);
    }

    /// Samples the next token of running sequence `i`, streams it, and decides
    /// whether the sequence goes on.
    fn emit(&mut self, i: usize, logits: &[f32]) -> Fate {
        let stop_tokens = &self.inner.stop_tokens;
        let context_len = self.inner.model.context_len();
        let model = &self.inner.model;
        let metrics = &self.inner.metrics;
        let s = &mut self.running[i];
        let token = s.sampler.sample(logits);
        s.generated.push(token);
        let now = Instant::now();
        match s.last_token.replace(now) {
            None => metrics
                .time_to_first_token
                .observe(now.duration_since(s.arrived).as_secs_f64()),
            Some(last) => metrics
                .time_per_output_token
                .observe(now.duration_since(last).as_secs_f64()),
        }
        metrics.generation_tokens.inc();
        if stop_tokens.contains(&token) {
            let tail = s.detok.flush(&s.stop);
            if s.sink
                .send(StreamEvent::Delta {
                    token: Some(token),
                    text: tail,
                })
                .is_err()
            {
                return Fate::Cancelled;
            }
            return Fate::Finished(FinishReason::Stop);
        }
        let (text, stopped) = match s.detok.push(model.as_ref(), &s.generated, &s.stop) {
            Ok(x) => x,
            Err(e) => return Fate::Failed(ServeError::Model { message: e.0 }),
        };
        if s.sink
            .send(StreamEvent::Delta {
                token: Some(token),
                text,
            })
            .is_err()
        {
            return Fate::Cancelled;
        }
        if stopped {
            return Fate::Finished(FinishReason::Stop);
        }
        let at_limit =
            s.generated.len() >= s.max_tokens || s.prompt.len() + s.generated.len() >= context_len;
        if at_limit {
            let tail = s.detok.flush(&s.stop);
            if !tail.is_empty()
                && s.sink
                    .send(StreamEvent::Delta {
                        token: None,
                        text: tail,
                    })
                    .is_err()
            {
                return Fate::Cancelled;
            }
            return Fate::Finished(FinishReason::Length);
        }
        s.pending = Some(token);
        Fate::Continue
    }
}

/// Incremental detokenization with stop strings.
///
/// Text is decoded over a sliding window of tokens (the two-offset method of
/// Hugging Face TGI), so multi-byte characters split across tokens and
/// tokenizers that drop a leading space at the start of a decode are handled;
/// a delta is emitted only when it does not end in a replacement character.
/// Text that could be the start of a stop string is held back until it can no
/// longer be one.
#[derive(Default)]
struct Detokenizer {
    prefix_offset: usize,
    read_offset: usize,
    /// All text decoded so far.
    text: String,
    /// Bytes of `text` already sent.
    sent: usize,
}

impl Detokenizer {
    /// Feeds the newest token (last of `tokens`); returns the text safe to
    /// send and whether a stop string was hit.
    fn push<M: BatchModel>(
        &mut self,
        model: &M,
        tokens: &[u32],
        stop: &[String],
    ) -> Result<(String, bool), ModelError> {
        let prefix = model.decode(&tokens[self.prefix_offset..self.read_offset])?;
        let full = model.decode(&tokens[self.prefix_offset..])?;
        if full.len() > prefix.len()
            && !full.ends_with('\u{FFFD}')
            && full.is_char_boundary(prefix.len())
        {
            self.text.push_str(&full[prefix.len()..]);
            self.prefix_offset = self.read_offset;
            self.read_offset = tokens.len();
        }
        // Stop strings: search only where a new match can start.
        let max_stop = stop.iter().map(String::len).max().unwrap_or(0);
        if max_stop > 0 {
            let mut from = self.sent.saturating_sub(max_stop);
            while !self.text.is_char_boundary(from) {
                from -= 1;
            }
            let hit = stop
                .iter()
                .filter_map(|s| self.text[from..].find(s.as_str()).map(|p| from + p))
                .min();
            if let Some(p) = hit {
                self.text.truncate(p);
                let out = self.text.get(self.sent..).unwrap_or("").to_owned();
                self.sent = self.text.len();
                return Ok((out, true));
            }
        }
        let safe = self.text.len() - held_back(&self.text, stop);
        let out = self.text[self.sent.min(safe)..safe].to_owned();
        self.sent = self.sent.max(safe);
        Ok((out, false))
    }

    /// Everything not yet sent (at the end of a sequence).
    fn flush(&mut self, _stop: &[String]) -> String {
        let out = self.text.get(self.sent..).unwrap_or("").to_owned();
        self.sent = self.text.len();
        out
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of a stop string.
fn held_back(text: &str, stop: &[String]) -> usize {
    let mut best = 0;
    for s in stop {
        for k in (1..s.len()).rev() {
            if k <= best {
                break;
            }
            if s.is_char_boundary(k) && text.ends_with(&s[..k]) {
                best = k;
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests;
