//! Scheduler tests on a small deterministic fake model.
//!
//! The fake's next token depends on the whole history in its KV cache and on
//! the adapter's seed, so a scheduler bug that mixes up caches, adapters or
//! positions changes the output.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::*;
use crate::store::{AdapterFiles, StoreError};

const VOCAB: usize = 40;
const EOS: u32 = 1;

#[derive(Default)]
struct Calls {
    /// One entry per `decode_batch` call: the batch size.
    decode_batches: Vec<usize>,
    /// One entry per call, in order: `("d", n)` decode of n, `("p", n)` prefill chunk of n.
    log: Vec<(char, usize)>,
}

struct FakeModel {
    context: usize,
    /// Whether EOS may be generated (off for tests that need endless output).
    eos: bool,
    calls: Mutex<Calls>,
    /// `encode` calls.
    encoded: AtomicUsize,
}

struct FakeAdapter {
    seed: u32,
}

impl FakeModel {
    fn new(context: usize) -> Arc<Self> {
        Arc::new(Self {
            context,
            eos: true,
            calls: Mutex::new(Calls::default()),
            encoded: AtomicUsize::new(0),
        })
    }

    fn endless(context: usize) -> Arc<Self> {
        Arc::new(Self {
            context,
            eos: false,
            calls: Mutex::new(Calls::default()),
            encoded: AtomicUsize::new(0),
        })
    }

    fn logits(&self, history: &[u32], adapter: Option<&FakeAdapter>) -> Vec<f32> {
        let mut l = Self::next(history, adapter);
        if !self.eos {
            l[EOS as usize] = -10.0;
        }
        l
    }

    fn next(history: &[u32], adapter: Option<&FakeAdapter>) -> Vec<f32> {
        let h = history.iter().fold(17u64, |acc, &t| {
            acc.wrapping_mul(31).wrapping_add(u64::from(t))
        });
        let seed = adapter.map_or(0, |a| a.seed);
        // Token 1 (EOS) comes out only when the hash says so, about 1 in 40.
        let next = ((h.wrapping_add(u64::from(seed) * 7919)) % VOCAB as u64) as usize;
        let mut l = vec![0.0; VOCAB];
        l[next] = 10.0;
        l
    }
}

impl BatchModel for FakeModel {
    type Adapter = FakeAdapter;
    type Cache = Vec<u32>;

    fn name(&self) -> &str {
        "fake"
    }
    fn context_len(&self) -> usize {
        self.context
    }
    fn vocab_size(&self) -> usize {
        VOCAB
    }
    fn stop_tokens(&self) -> Vec<u32> {
        vec![EOS]
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.encoded.fetch_add(1, Ordering::SeqCst);
        Ok(text.bytes().map(|b| 2 + u32::from(b) % 38).collect())
    }
    fn decode(&self, tokens: &[u32]) -> Result<String, ModelError> {
        Ok(tokens
            .iter()
            .filter(|&&t| t >= 2)
            .map(|&t| char::from(b'a' + ((t - 2) % 26) as u8))
            .collect())
    }
    fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<String, ModelError> {
        Ok(messages
            .iter()
            .map(|m| format!("{}:{};", m.role, m.content))
            .collect())
    }
    fn load_adapter(&self, files: &AdapterFiles) -> Result<FakeAdapter, String> {
        let v: serde_json::Value =
            serde_json::from_slice(&files.config_json).map_err(|e| e.to_string())?;
        if v.get("hostile").is_some() {
            return Err("the adapter is hostile".into());
        }
        let seed = v
            .get("seed")
            .and_then(|s| s.as_u64())
            .ok_or("config has no seed")? as u32;
        Ok(FakeAdapter { seed })
    }
    fn adapter_bytes(&self, _: &FakeAdapter) -> usize {
        100
    }
    fn new_cache(&self) -> Vec<u32> {
        Vec::new()
    }
    fn prefill(
        &self,
        tokens: &[u32],
        cache: &mut Vec<u32>,
        adapter: Option<&FakeAdapter>,
    ) -> Result<Vec<f32>, ModelError> {
        self.calls.lock().unwrap().log.push(('p', tokens.len()));
        cache.extend_from_slice(tokens);
        Ok(self.logits(cache, adapter))
    }
    fn decode_batch(
        &self,
        slots: &mut [DecodeSlot<'_, Vec<u32>, FakeAdapter>],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        {
            let mut c = self.calls.lock().unwrap();
            c.decode_batches.push(slots.len());
            c.log.push(('d', slots.len()));
        }
        Ok(slots
            .iter_mut()
            .map(|s| {
                s.cache.push(s.token);
                self.logits(s.cache, s.adapter)
            })
            .collect())
    }
}

/// Serves `{"seed": n}` for names `s<n>`, a hostile config for `evil`, nothing
/// for other names; a closed gate holds every fetch.
struct GateStore {
    open: Mutex<bool>,
    cv: Condvar,
    fetches: AtomicUsize,
}

impl GateStore {
    fn new(open: bool) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::new(open),
            cv: Condvar::new(),
            fetches: AtomicUsize::new(0),
        })
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

impl AdapterStore for GateStore {
    fn fetch(&self, name: &AdapterName) -> Result<AdapterFiles, StoreError> {
        let mut g = self.open.lock().unwrap();
        while !*g {
            g = self.cv.wait(g).unwrap();
        }
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let cfg = match name.as_str() {
            "evil" => r#"{"hostile": true}"#.to_owned(),
            n if n.starts_with('s') => format!(r#"{{"seed": {}}}"#, &n[1..]),
            _ => {
                return Err(StoreError::NotFound {
                    name: name.clone(),
                    location: "gate".into(),
                })
            }
        };
        Ok(AdapterFiles {
            name: name.clone(),
            config_json: cfg.into_bytes(),
            safetensors: vec![],
        })
    }
    fn list(&self) -> Result<Vec<AdapterName>, StoreError> {
        Ok(vec![])
    }
    fn describe(&self) -> String {
        "gate".into()
    }
}

fn engine_with(model: Arc<FakeModel>, store: Arc<GateStore>, limits: EngineLimits) -> EngineHandle {
    Engine::start(
        model,
        store,
        EngineConfig {
            limits,
            cache: CacheConfig {
                capacity_bytes: 10_000,
                loader_threads: 2,
            },
        },
    )
}

fn req(prompt: &str, adapter: Option<&str>, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        prompt: Prompt::Text(prompt.into()),
        adapter: adapter.map(|a| AdapterName::parse(a).unwrap()),
        sampling: SamplingParams::greedy(),
        max_tokens: Some(max_tokens),
        stop: vec![],
        rate_key: None,
    }
}

/// The reference: what the fake model generates for one request run alone, by hand.
fn reference(prompt: &str, seed: Option<u32>, max_tokens: usize) -> Vec<u32> {
    reference_on(&FakeModel::new(1000), prompt, seed, max_tokens)
}

fn reference_on(m: &FakeModel, prompt: &str, seed: Option<u32>, max_tokens: usize) -> Vec<u32> {
    let a = seed.map(|seed| FakeAdapter { seed });
    let mut hist = m.encode(prompt).unwrap();
    let mut out = Vec::new();
    for _ in 0..max_tokens {
        let t = crate::sampling::argmax(&m.logits(&hist, a.as_ref()));
        out.push(t);
        if t == EOS {
            break;
        }
        hist.push(t);
    }
    out
}

#[test]
fn a_request_streams_its_tokens_and_reports_usage() {
    let h = engine_with(
        FakeModel::new(1000),
        GateStore::new(true),
        EngineLimits::default(),
    );
    let sub = h.submit(req("hello world", None, 12)).unwrap();
    assert_eq!(sub.prompt_tokens, 11);
    let out = sub.collect_blocking().unwrap();
    let want = reference("hello world", None, 12);
    assert_eq!(out.tokens, want);
    assert_eq!(
        out.usage,
        Usage {
            prompt_tokens: 11,
            completion_tokens: want.len()
        }
    );
    let fake = FakeModel::new(1);
    let visible: Vec<u32> = want.iter().copied().filter(|&t| t != EOS).collect();
    assert_eq!(out.text, fake.decode(&visible).unwrap());
}

#[test]
fn mixed_adapter_requests_share_each_decode_step_and_match_their_solo_outputs() {
    let model = FakeModel::new(1000);
    let store = GateStore::new(true);
    let h = engine_with(model.clone(), store.clone(), EngineLimits::default());
    // Load the adapters first so all requests start together.
    for s in ["s1", "s2", "s3"] {
        h.start_adapter_load(&AdapterName::parse(s).unwrap())
            .unwrap()
            .wait()
            .unwrap();
    }
    let cases: Vec<(String, Option<u32>)> = (0..12)
        .map(|i| {
            (
                format!("prompt number {i}"),
                [None, Some(1), Some(2), Some(3)][i % 4],
            )
        })
        .collect();
    let subs: Vec<_> = cases
        .iter()
        .map(|(p, seed)| {
            let name = seed.map(|s| format!("s{s}"));
            h.submit(req(p, name.as_deref(), 20)).unwrap()
        })
        .collect();
    for (sub, (p, seed)) in subs.into_iter().zip(&cases) {
        assert_eq!(
            sub.collect_blocking().unwrap().tokens,
            reference(p, *seed, 20),
            "prompt {p:?} adapter {seed:?}"
        );
    }
    let st = h.stats();
    assert!(
        st.max_adapters_in_batch >= 2,
        "adapters were batched together: {st:?}"
    );
    assert!(st.max_batch > 1, "{st:?}");
    assert_eq!(
        st.decode_calls as usize,
        model.calls.lock().unwrap().decode_batches.len()
    );
    assert_eq!(
        store.fetches.load(Ordering::SeqCst),
        3,
        "each adapter fetched once"
    );
}

#[test]
fn a_long_prompt_is_prefilled_in_chunks_while_running_sequences_keep_decoding() {
    let model = FakeModel::endless(100_000);
    let limits = EngineLimits {
        step_token_budget: 40,
        ..EngineLimits::default()
    };
    let h = engine_with(model.clone(), GateStore::new(true), limits);
    // Endless and cancelled at the end: it is decoding for the whole test.
    let short = h.submit(req("hi", None, 90_000)).unwrap();
    // Wait for the short one to be decoding before the long prompt arrives.
    let mut short_events = short.events;
    assert!(matches!(
        short_events.blocking_recv(),
        Some(StreamEvent::Delta { .. })
    ));
    let long_prompt = "x".repeat(300);
    let long = h.submit(req(&long_prompt, None, 5)).unwrap();
    let long_out = long.collect_blocking().unwrap();
    assert_eq!(long_out.tokens, reference_on(&model, &long_prompt, None, 5));
    let log = model.calls.lock().unwrap().log.clone();
    let chunks: Vec<usize> = log
        .iter()
        .filter(|(k, n)| *k == 'p' && *n > 2)
        .map(|(_, n)| *n)
        .collect();
    assert!(
        chunks.len() >= 8,
        "300 tokens over a 40-token budget take many chunks: {chunks:?}"
    );
    assert!(chunks.iter().all(|&n| n <= 40), "{chunks:?}");
    assert_eq!(chunks.iter().sum::<usize>(), 300);
    // Between the first and last chunk of the long prompt, decodes kept running.
    let first = log.iter().position(|(k, n)| *k == 'p' && *n > 2).unwrap();
    let last = log.iter().rposition(|(k, n)| *k == 'p' && *n > 2).unwrap();
    let decodes_between = log[first..last].iter().filter(|(k, _)| *k == 'd').count();
    assert!(
        decodes_between >= chunks.len() - 1,
        "decodes interleaved with prefill: {log:?}"
    );
    drop(short_events);
}

#[test]
fn requests_for_other_adapters_run_while_an_adapter_loads() {
    let store = GateStore::new(false);
    let h = engine_with(FakeModel::new(1000), store.clone(), EngineLimits::default());
    let slow = h.submit(req("needs an adapter", Some("s9"), 8)).unwrap();
    // The base-model request completes while s9's fetch is blocked.
    let base = h
        .submit(req("base model", None, 8))
        .unwrap()
        .collect_blocking()
        .unwrap();
    assert_eq!(base.tokens, reference("base model", None, 8));
    assert_eq!(h.adapters().adapters[0].state, "loading");
    store.open();
    assert_eq!(
        slow.collect_blocking().unwrap().tokens,
        reference("needs an adapter", Some(9), 8)
    );
}

#[test]
fn unknown_and_hostile_adapters_fail_their_request_and_the_engine_keeps_serving() {
    let h = engine_with(
        FakeModel::new(1000),
        GateStore::new(true),
        EngineLimits::default(),
    );
    let e = h
        .submit(req("a", Some("nobody"), 4))
        .unwrap()
        .collect_blocking()
        .unwrap_err();
    assert!(matches!(e, ServeError::UnknownAdapter { .. }), "{e}");
    assert_eq!(e.http_status(), 404);
    let e = h
        .submit(req("a", Some("evil"), 4))
        .unwrap()
        .collect_blocking()
        .unwrap_err();
    assert_eq!(e.http_status(), 422);
    assert!(e.to_string().contains("hostile"), "{e}");
    assert_eq!(
        h.submit(req("a", Some("s1"), 4))
            .unwrap()
            .collect_blocking()
            .unwrap()
            .tokens,
        reference("a", Some(1), 4)
    );
    assert_eq!(h.stats().failed, 2);
}

#[test]
fn a_prompt_that_does_not_fit_the_context_is_refused_with_the_numbers() {
    let h = engine_with(
        FakeModel::new(32),
        GateStore::new(true),
        EngineLimits::default(),
    );
    let e = h.submit(req(&"y".repeat(30), None, 5)).unwrap_err();
    assert_eq!(
        e,
        ServeError::ContextOverflow {
            prompt_tokens: 30,
            max_tokens: 5,
            context_len: 32
        }
    );
    // Without max_tokens the completion gets what the context has left.
    let mut r = req(&"y".repeat(30), None, 1);
    r.max_tokens = None;
    let sub = h.submit(r).unwrap();
    assert_eq!(sub.max_tokens, 2);
    assert!(sub.collect_blocking().unwrap().usage.total_tokens() <= 32);
    assert_eq!(h.submit(req("", None, 5)).unwrap_err().http_status(), 400);
}

#[test]
fn a_full_queue_answers_429_and_frees_up_as_requests_finish() {
    let store = GateStore::new(false);
    let limits = EngineLimits {
        max_running: 1,
        max_queued: 2,
        ..EngineLimits::default()
    };
    let h = engine_with(FakeModel::new(1000), store.clone(), limits);
    // Both wait on the closed store, so they stay queued.
    let a = h.submit(req("a", Some("s1"), 3)).unwrap();
    let b = h.submit(req("b", Some("s2"), 3)).unwrap();
    let e = h.submit(req("c", None, 3)).unwrap_err();
    assert_eq!(
        e,
        ServeError::QueueFull {
            queued: 2,
            max_queued: 2
        }
    );
    assert_eq!(e.http_status(), 429);
    store.open();
    a.collect_blocking().unwrap();
    b.collect_blocking().unwrap();
    h.submit(req("c", None, 3))
        .unwrap()
        .collect_blocking()
        .unwrap();
}

#[test]
fn the_running_batch_never_exceeds_max_running_and_waiting_requests_take_freed_places() {
    let limits = EngineLimits {
        max_running: 3,
        ..EngineLimits::default()
    };
    let model = FakeModel::endless(1000);
    let h = engine_with(model.clone(), GateStore::new(true), limits);
    let prompts: Vec<String> = (0..8).map(|i| format!("request {i}")).collect();
    let subs: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| h.submit(req(p, (i % 2 == 1).then_some("s2"), 12)).unwrap())
        .collect();
    for (i, (sub, p)) in subs.into_iter().zip(&prompts).enumerate() {
        let out = sub.collect_blocking().unwrap();
        let seed = (i % 2 == 1).then_some(2);
        assert_eq!(out.tokens, reference_on(&model, p, seed, 12), "request {i}");
    }
    let calls = model.calls.lock().unwrap();
    let largest = calls.decode_batches.iter().copied().max().unwrap();
    assert!(largest <= 3, "a decode batch of {largest} > max_running 3");
    assert_eq!(h.stats().completed, 8);
    assert_eq!(h.stats().max_batch, largest);
}

#[test]
fn a_key_over_its_rate_gets_429_with_a_retry_time() {
    let limits = EngineLimits {
        rate_per_sec: 0.001,
        rate_burst: 2.0,
        ..EngineLimits::default()
    };
    let h = engine_with(FakeModel::new(1000), GateStore::new(true), limits);
    let keyed = |k: &str| GenerateRequest {
        rate_key: Some(k.into()),
        ..req("a", None, 2)
    };
    h.submit(keyed("alice")).unwrap();
    h.submit(keyed("alice")).unwrap();
    let e = h.submit(keyed("alice")).unwrap_err();
    assert!(
        matches!(e, ServeError::RateLimited { retry_after } if retry_after > Duration::from_secs(60)),
        "{e}"
    );
    assert_eq!(e.http_status(), 429);
    h.submit(keyed("bob")).unwrap();
}

#[test]
fn oversized_prompts_stop_lists_and_max_tokens_get_400_naming_the_limit_before_any_work() {
    let model = FakeModel::new(64);
    let checked = Arc::new(AtomicUsize::new(0));
    let counter = checked.clone();
    let check = move |_: &AdmissionInfo<'_>| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(())
    };
    let limits = EngineLimits {
        max_prompt_bytes: 1000,
        max_stop_strings: 4,
        max_stop_bytes: 8,
        ..EngineLimits::default()
    };
    let h = Engine::start_with_check(
        model.clone(),
        GateStore::new(true),
        EngineConfig {
            limits,
            ..EngineConfig::default()
        },
        Some(Arc::new(check)),
    );
    let refused = |r: GenerateRequest| {
        let e = h.submit(r).unwrap_err();
        assert_eq!(e.http_status(), 400, "{e}");
        e.to_string()
    };
    // A 2 MB prompt: refused on its size, before tokenizing or the fee check.
    let big = "y".repeat(2 << 20);
    let msg = refused(req(&big, None, 4));
    assert!(
        msg.contains("2097152 bytes") && msg.contains("at most 1000 (max_prompt_bytes)"),
        "{msg}"
    );
    let chat = GenerateRequest {
        prompt: Prompt::Chat(vec![ChatMessage::new("user", big.clone())]),
        ..req("", None, 4)
    };
    assert!(refused(chat).contains("max_prompt_bytes"));
    assert_eq!(model.encoded.load(Ordering::SeqCst), 0, "nothing tokenized");
    // Stop lists: too many, too long.
    let many = GenerateRequest {
        stop: vec!["x".to_string(); 30_000],
        ..req("abc", None, 4)
    };
    assert!(refused(many).contains("30000 stop strings given; this node accepts at most 4"));
    let long = GenerateRequest {
        stop: vec!["z".repeat(9)],
        ..req("abc", None, 4)
    };
    assert!(refused(long).contains("at most 8 (max_stop_bytes)"));
    assert_eq!(checked.load(Ordering::SeqCst), 0, "no fee check ran");
    // max_tokens near usize::MAX does not wrap past the context check.
    let e = h.submit(req("abc", None, usize::MAX)).unwrap_err();
    assert_eq!(
        e,
        ServeError::ContextOverflow {
            prompt_tokens: 3,
            max_tokens: usize::MAX,
            context_len: 64
        }
    );
    assert!(
        e.to_string()
            .contains(&format!("= {} tokens", 3 + u128::from(u64::MAX))),
        "{e}"
    );
    assert_eq!(checked.load(Ordering::SeqCst), 0);
    assert!(
        model.calls.lock().unwrap().log.is_empty(),
        "no forward pass ran"
    );
    // Within the limits the same request runs.
    h.submit(GenerateRequest {
        stop: vec!["zzzzzzzz".into(); 4],
        ..req(&"y".repeat(40), None, 4)
    })
    .unwrap()
    .collect_blocking()
    .unwrap();
    assert_eq!(checked.load(Ordering::SeqCst), 1);
}

#[test]
fn the_admission_check_refuses_with_402_before_any_compute() {
    let model = FakeModel::new(1000);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let check = move |i: &AdmissionInfo<'_>| {
        seen2.lock().unwrap().push((i.prompt_tokens, i.max_tokens));
        if i.rate_key == Some("broke") {
            Err("balance 0 OPEN is below the maximum fee 0.5 OPEN".into())
        } else {
            Ok(())
        }
    };
    let h = Engine::start_with_check(
        model.clone(),
        GateStore::new(true),
        EngineConfig::default(),
        Some(Arc::new(check)),
    );
    let e = h
        .submit(GenerateRequest {
            rate_key: Some("broke".into()),
            ..req("abc", None, 7)
        })
        .unwrap_err();
    assert_eq!(e.http_status(), 402);
    assert!(e.to_string().contains("balance"), "{e}");
    assert_eq!(*seen.lock().unwrap(), vec![(3, 7)]);
    assert!(
        model.calls.lock().unwrap().log.is_empty(),
        "no forward pass ran"
    );
    h.submit(GenerateRequest {
        rate_key: Some("rich".into()),
        ..req("abc", None, 7)
    })
    .unwrap()
    .collect_blocking()
    .unwrap();
}

#[test]
fn dropping_the_stream_cancels_the_sequence_and_releases_its_adapter() {
    let h = engine_with(
        FakeModel::endless(100_000),
        GateStore::new(true),
        EngineLimits::default(),
    );
    let mut sub = h.submit(req("go on forever", Some("s4"), 50_000)).unwrap();
    assert!(matches!(
        sub.events.blocking_recv(),
        Some(StreamEvent::Delta { .. })
    ));
    assert_eq!(h.adapters().adapters[0].pins, 1);
    drop(sub);
    // Wait (bounded) for the scheduler to notice; no timing is asserted.
    for _ in 0..2000 {
        let st = h.stats();
        if (st.cancelled, st.running) == (1, 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let st = h.stats();
    assert_eq!((st.cancelled, st.running), (1, 0), "{st:?}");
    assert_eq!(h.adapters().adapters[0].pins, 0);
    assert_eq!(
        h.unload_adapter(&AdapterName::parse("s4").unwrap()),
        Ok(100)
    );
}

#[test]
fn stop_strings_end_the_completion_and_are_not_emitted() {
    let h = engine_with(
        FakeModel::new(1000),
        GateStore::new(true),
        EngineLimits::default(),
    );
    let full = h
        .submit(req("stop test", None, 30))
        .unwrap()
        .collect_blocking()
        .unwrap();
    assert!(full.text.len() >= 6, "{:?}", full.text);
    let stop = full.text[3..5].to_owned();
    let cut = full.text.find(&stop).unwrap();
    let mut r = req("stop test", None, 30);
    r.stop = vec![stop.clone()];
    let mut sub = h.submit(r).unwrap();
    let mut streamed = String::new();
    let done = loop {
        match sub.events.blocking_recv().unwrap() {
            StreamEvent::Delta { text, .. } => streamed.push_str(&text),
            StreamEvent::Done(c) => break c,
            StreamEvent::Error(e) => panic!("{e}"),
        }
    };
    assert_eq!(streamed, full.text[..cut]);
    assert_eq!(done.finish_reason, FinishReason::Stop);
}

#[test]
fn chat_requests_use_the_template_and_bad_requests_get_400() {
    let h = engine_with(
        FakeModel::new(1000),
        GateStore::new(true),
        EngineLimits::default(),
    );
    let chat = GenerateRequest {
        prompt: Prompt::Chat(vec![ChatMessage::new("user", "hi")]),
        ..req("", None, 3)
    };
    assert_eq!(h.submit(chat).unwrap().prompt_tokens, "user:hi;".len());
    let empty_chat = GenerateRequest {
        prompt: Prompt::Chat(vec![]),
        ..req("", None, 3)
    };
    assert_eq!(h.submit(empty_chat).unwrap_err().http_status(), 400);
    let bad_ids = GenerateRequest {
        prompt: Prompt::Tokens(vec![3, 999]),
        ..req("", None, 3)
    };
    assert!(h.submit(bad_ids).unwrap_err().to_string().contains("999"));
    let hot = GenerateRequest {
        sampling: SamplingParams {
            temperature: 9.0,
            ..Default::default()
        },
        ..req("a", None, 3)
    };
    assert_eq!(h.submit(hot).unwrap_err().http_status(), 400);
}

#[test]
fn held_back_text_is_the_longest_stop_prefix_at_the_end() {
    let stops = vec!["</s>".to_owned(), "END".to_owned()];
    assert_eq!(held_back("abc</", &stops), 2);
    assert_eq!(held_back("abcEN", &stops), 2);
    assert_eq!(held_back("abc", &stops), 0);
}

/// An admission check that counts the tokens it hands out and that are
/// still alive (each token decrements the count when dropped).
struct CountingCheck {
    live: Arc<AtomicUsize>,
}

struct CountedToken(Arc<AtomicUsize>);

impl Drop for CountedToken {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AdmissionCheck for CountingCheck {
    fn check(&self, _: &AdmissionInfo<'_>) -> Result<(), String> {
        Ok(())
    }
    fn admit(&self, _: &AdmissionInfo<'_>) -> Result<Option<AdmissionToken>, String> {
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(Some(Box::new(CountedToken(self.live.clone()))))
    }
}

#[test]
fn the_admission_token_is_handed_to_the_caller_and_dropped_when_the_queue_refuses() {
    let live = Arc::new(AtomicUsize::new(0));
    let store = GateStore::new(false);
    let h = Engine::start_with_check(
        FakeModel::new(1000),
        store.clone(),
        EngineConfig {
            limits: EngineLimits {
                max_running: 1,
                max_queued: 1,
                ..EngineLimits::default()
            },
            ..EngineConfig::default()
        },
        Some(Arc::new(CountingCheck { live: live.clone() })),
    );
    let mut a = h.submit(req("a", Some("s1"), 3)).unwrap();
    let token = a.admission.take().expect("the check's token comes back");
    assert!(token.downcast_ref::<CountedToken>().is_some());
    assert_eq!(live.load(Ordering::SeqCst), 1);
    // The queue is full: the second request's token is released at once.
    let e = h.submit(req("b", None, 3)).unwrap_err();
    assert_eq!(e.http_status(), 429);
    assert_eq!(live.load(Ordering::SeqCst), 1);
    store.open();
    a.collect_blocking().unwrap();
    // The engine never drops the caller's token: the caller decides when
    // the request is paid for.
    assert_eq!(live.load(Ordering::SeqCst), 1);
    drop(token);
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn shutdown_joins_the_engine_threads_and_releases_the_model_and_the_check() {
    let model = FakeModel::endless(100_000);
    let store = GateStore::new(true);
    let check: Arc<dyn AdmissionCheck> =
        Arc::new(|_: &AdmissionInfo<'_>| -> Result<(), String> { Ok(()) });
    let weak_check = Arc::downgrade(&check);
    let h = Engine::start_with_check(
        model.clone(),
        store.clone(),
        EngineConfig::default(),
        Some(check),
    );
    // One sequence running on an adapter (a loader thread ran), one queued
    // on a load that fails.
    let mut running = h.submit(req("go on", Some("s3"), 50_000)).unwrap();
    assert!(matches!(
        running.events.blocking_recv(),
        Some(StreamEvent::Delta { .. })
    ));
    h.shutdown();
    // The running request ends with ShuttingDown, not silently.
    let mut last = None;
    while let Some(ev) = running.events.blocking_recv() {
        last = Some(ev);
    }
    assert!(
        matches!(last, Some(StreamEvent::Error(ServeError::ShuttingDown))),
        "{last:?}"
    );
    // No engine thread holds the model or the store any more: only this
    // test and the handle's frontend (model) remain.
    assert_eq!(Arc::strong_count(&store), 2, "test + the handle's cache");
    assert_eq!(
        h.submit(req("late", None, 3)).unwrap_err(),
        ServeError::ShuttingDown
    );
    assert!(matches!(
        h.start_adapter_load(&AdapterName::parse("s4").unwrap()),
        Err(ServeError::ShuttingDown) | Err(ServeError::StoreUnavailable { .. })
    ));
    h.shutdown(); // idempotent
    drop(h);
    assert!(weak_check.upgrade().is_none(), "the check is released");
    assert_eq!(Arc::strong_count(&model), 1);
    assert_eq!(Arc::strong_count(&store), 1);
}
