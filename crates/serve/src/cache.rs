//! The adapter cache: loaded adapters in memory, bounded in bytes, LRU.
//!
//! Policy (after S-LoRA's unified adapter pool, on the CPU):
//!
//! - Capacity is a number of **bytes** of loaded adapter weights (as reported by
//!   the model), not a number of adapters: a rank-64 all-linear adapter costs
//!   as much as sixteen rank-8 q/v ones.
//! - A resident adapter is returned without touching the store (a *hit*); a
//!   *hot adapter is never reloaded*.
//! - A miss starts one load on a loader thread; further requests for the same
//!   adapter while it loads join that load (*coalesced*), so N concurrent
//!   requests cause one fetch and one parse.
//! - Loads run on dedicated loader threads, never on the scheduler thread: the
//!   running batch keeps decoding while an adapter is fetched and validated.
//! - Adapters used by running sequences are **pinned** ([`PinnedAdapter`]); a
//!   pinned adapter is never evicted. When a new adapter does not fit, the least
//!   recently used *unpinned* adapters are evicted until it does. If everything
//!   left is pinned the new adapter is admitted over budget and the bound is
//!   restored as soon as pins are released (the engine keeps this rare: capacity
//!   should exceed `max_running × largest adapter`). An adapter larger than the
//!   whole capacity is refused.
//! - Failed loads are not cached: every waiter gets the error, and a later
//!   request tries again (the file may have been fixed).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::name::AdapterName;
use crate::store::{AdapterFiles, AdapterStore, StoreError};

/// Why an adapter could not be made available.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The store has no adapter of that name.
    #[error("unknown adapter {name}: {detail}")]
    NotFound {
        /// The adapter asked for.
        name: AdapterName,
        /// Where it was looked for.
        detail: String,
    },
    /// The adapter's files were fetched but refused (hostile or broken
    /// adapter, incomplete files, wrong base model …).
    #[error("adapter {name} refused: {reason}")]
    Rejected {
        /// The adapter asked for.
        name: AdapterName,
        /// What is wrong with it.
        reason: String,
    },
    /// The adapter alone is larger than the whole cache.
    #[error(
        "adapter {name} needs {bytes} bytes, more than the whole adapter cache ({capacity} bytes)"
    )]
    TooLarge {
        /// The adapter asked for.
        name: AdapterName,
        /// Its size in memory.
        bytes: usize,
        /// The cache capacity.
        capacity: usize,
    },
    /// The store could not be read (network, disk).
    #[error("adapter store failed for {name}: {message}")]
    Store {
        /// The adapter asked for.
        name: AdapterName,
        /// The store's error.
        message: String,
    },
    /// Unloading an adapter that running sequences use.
    #[error("adapter {name} is in use by {pins} running sequence(s)")]
    InUse {
        /// The adapter asked for.
        name: AdapterName,
        /// How many sequences use it.
        pins: usize,
    },
    /// Unloading an adapter that is not loaded.
    #[error("adapter {name} is not loaded")]
    NotLoaded {
        /// The adapter asked for.
        name: AdapterName,
    },
    /// The cache's loader threads are gone (engine shut down).
    #[error("the adapter loader has shut down")]
    Shutdown,
}

impl CacheError {
    fn from_store(name: &AdapterName, e: StoreError) -> Self {
        match e {
            StoreError::NotFound { name, location } => CacheError::NotFound {
                name,
                detail: location,
            },
            StoreError::MissingFile { ref name, .. }
            | StoreError::FileTooLarge { ref name, .. }
            | StoreError::OutsideRoot { ref name, .. } => CacheError::Rejected {
                name: name.clone(),
                reason: e.to_string(),
            },
            StoreError::Io { ref name, .. } | StoreError::Backend { ref name, .. } => {
                CacheError::Store {
                    name: name.clone(),
                    message: e.to_string(),
                }
            }
            // Only opening a store by URL fails this way, never a fetch;
            // still, it is the store's fault, not the adapter's.
            StoreError::InvalidUrl { .. } => CacheError::Store {
                name: name.clone(),
                message: e.to_string(),
            },
        }
    }
}

/// Parses fetched files into a loaded adapter and reports its size in bytes.
pub(crate) type AdapterLoader<A> =
    Arc<dyn Fn(&AdapterFiles) -> Result<(A, usize), String> + Send + Sync>;

/// Cache configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    /// Budget for loaded adapter weights, in bytes.
    pub capacity_bytes: usize,
    /// Number of loader threads (adapters fetched and parsed concurrently).
    pub loader_threads: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity_bytes: 1 << 30,
            loader_threads: 2,
        }
    }
}

/// The outcome of an in-flight load, shared by every request that waits on it.
pub struct LoadTicket {
    name: AdapterName,
    outcome: Mutex<Option<Result<(), CacheError>>>,
    done: Condvar,
    notify: tokio::sync::Notify,
}

impl LoadTicket {
    fn new(name: AdapterName) -> Arc<Self> {
        Arc::new(Self {
            name,
            outcome: Mutex::new(None),
            done: Condvar::new(),
            notify: tokio::sync::Notify::new(),
        })
    }

    fn resolve(&self, r: Result<(), CacheError>) {
        *self.outcome.lock().expect("ticket lock") = Some(r);
        self.done.notify_all();
        self.notify.notify_waiters();
    }

    /// The adapter being loaded.
    pub fn name(&self) -> &AdapterName {
        &self.name
    }

    /// `None` while loading; then the load's result.
    pub fn outcome(&self) -> Option<Result<(), CacheError>> {
        self.outcome.lock().expect("ticket lock").clone()
    }

    /// Blocks the calling thread until the load finishes.
    pub fn wait(&self) -> Result<(), CacheError> {
        let mut g = self.outcome.lock().expect("ticket lock");
        loop {
            if let Some(r) = g.as_ref() {
                return r.clone();
            }
            g = self.done.wait(g).expect("ticket lock");
        }
    }

    /// Waits (asynchronously) until the load finishes.
    pub async fn wait_async(&self) -> Result<(), CacheError> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.outcome() {
                return r;
            }
            notified.await;
        }
    }
}

impl std::fmt::Debug for LoadTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadTicket")
            .field("name", &self.name)
            .field("outcome", &self.outcome())
            .finish()
    }
}

/// An adapter held for a running sequence: while this guard lives the adapter
/// cannot be evicted.
pub struct PinnedAdapter<A: Send + Sync + 'static> {
    name: AdapterName,
    adapter: Arc<A>,
    shared: Arc<Shared<A>>,
}

impl<A: Send + Sync + 'static> PinnedAdapter<A> {
    /// The adapter's name.
    pub fn name(&self) -> &AdapterName {
        &self.name
    }
    /// The loaded adapter.
    pub fn adapter(&self) -> &A {
        &self.adapter
    }
}

impl<A: Send + Sync + 'static> std::fmt::Debug for PinnedAdapter<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedAdapter")
            .field("name", &self.name)
            .finish()
    }
}

impl<A: Send + Sync + 'static> Drop for PinnedAdapter<A> {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock().expect("cache lock");
        st.tick += 1;
        let tick = st.tick;
        if let Some(Slot::Ready(r)) = st.slots.get_mut(&self.name) {
            r.pins = r.pins.saturating_sub(1);
            r.last_used = tick;
        }
        if st.bytes > self.shared.capacity {
            st.evict_until_fits(0, self.shared.capacity);
        }
    }
}

/// Result of asking the cache for an adapter.
pub enum Acquire<A: Send + Sync + 'static> {
    /// Resident: pinned for the caller.
    Ready(PinnedAdapter<A>),
    /// Loading (started now or earlier): poll or wait on the ticket.
    Loading(Arc<LoadTicket>),
}

/// One adapter's line in [`CacheStats`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CachedAdapter {
    /// Adapter name.
    pub name: String,
    /// `loaded` or `loading`.
    pub state: &'static str,
    /// Bytes in memory (0 while loading).
    pub bytes: usize,
    /// Running sequences using it.
    pub pins: usize,
    /// How long its last load took (fetch + parse + validate), in milliseconds.
    pub load_ms: f64,
}

/// Cache state and counters, as served by `GET /v1/adapters`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CacheStats {
    /// The store adapters come from.
    pub store: String,
    /// Byte budget.
    pub capacity_bytes: usize,
    /// Bytes of loaded adapters.
    pub bytes: usize,
    /// Requests served from a resident adapter.
    pub hits: u64,
    /// Requests that found the adapter absent (started or joined a load).
    pub misses: u64,
    /// Misses that joined a load already in flight.
    pub coalesced: u64,
    /// Loads run (fetch + parse), successful or not.
    pub loads: u64,
    /// Loads that failed.
    pub load_failures: u64,
    /// Adapters evicted to make room.
    pub evictions: u64,
    /// Admissions that left the cache over budget because everything else was pinned.
    pub over_budget_admissions: u64,
    /// Mean successful load time, milliseconds.
    pub load_ms_mean: f64,
    /// Slowest successful load, milliseconds.
    pub load_ms_max: f64,
    /// Loaded and loading adapters, most recently used first.
    pub adapters: Vec<CachedAdapter>,
}

struct Ready<A> {
    adapter: Arc<A>,
    bytes: usize,
    pins: usize,
    last_used: u64,
    load_time: Duration,
}

enum Slot<A> {
    Loading(Arc<LoadTicket>),
    Ready(Ready<A>),
}

struct State<A> {
    slots: HashMap<AdapterName, Slot<A>>,
    bytes: usize,
    tick: u64,
    hits: u64,
    misses: u64,
    coalesced: u64,
    loads: u64,
    load_failures: u64,
    evictions: u64,
    over_budget: u64,
    load_time_total: Duration,
    load_time_max: Duration,
    loads_ok: u64,
}

impl<A> State<A> {
    /// Evicts least-recently-used unpinned adapters until `extra` more bytes
    /// fit under `capacity`. Returns whether they fit.
    fn evict_until_fits(&mut self, extra: usize, capacity: usize) -> bool {
        while self.bytes + extra > capacity {
            let victim = self
                .slots
                .iter()
                .filter_map(|(n, s)| match s {
                    Slot::Ready(r) if r.pins == 0 => Some((r.last_used, n)),
                    _ => None,
                })
                .min()
                .map(|(_, n)| n.clone());
            let Some(victim) = victim else { return false };
            if let Some(Slot::Ready(r)) = self.slots.remove(&victim) {
                self.bytes -= r.bytes;
                self.evictions += 1;
                tracing::debug!(target: "trib::serve::cache", adapter = %victim, bytes = r.bytes, "evicted");
            }
        }
        true
    }
}

struct Shared<A> {
    state: Mutex<State<A>>,
    capacity: usize,
}

type Waker = Arc<dyn Fn() + Send + Sync>;

/// A queued load: the adapter and the ticket its waiters hold.
type LoadJob = (AdapterName, Arc<LoadTicket>);

/// The adapter cache (see the module docs for the policy). Cheap to clone.
pub struct AdapterCache<A: Send + Sync + 'static> {
    shared: Arc<Shared<A>>,
    jobs: Mutex<Option<mpsc::Sender<LoadJob>>>,
    /// The loader threads, until [`close`](AdapterCache::close) joins them.
    loaders: Mutex<Vec<std::thread::JoinHandle<()>>>,
    store: Arc<dyn AdapterStore>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl<A: Send + Sync + 'static> AdapterCache<A> {
    /// A cache over `store`, parsing fetched files with `loader` (which returns
    /// the adapter and its size in bytes), with its loader threads started.
    pub fn new<F>(config: CacheConfig, store: Arc<dyn AdapterStore>, loader: F) -> Arc<Self>
    where
        F: Fn(&AdapterFiles) -> Result<(A, usize), String> + Send + Sync + 'static,
    {
        let loader: AdapterLoader<A> = Arc::new(loader);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                slots: HashMap::new(),
                bytes: 0,
                tick: 0,
                hits: 0,
                misses: 0,
                coalesced: 0,
                loads: 0,
                load_failures: 0,
                evictions: 0,
                over_budget: 0,
                load_time_total: Duration::ZERO,
                load_time_max: Duration::ZERO,
                loads_ok: 0,
            }),
            capacity: config.capacity_bytes,
        });
        let (tx, rx) = mpsc::channel::<LoadJob>();
        let rx = Arc::new(Mutex::new(rx));
        let waker: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
        let mut loaders = Vec::new();
        for i in 0..config.loader_threads.max(1) {
            let rx = rx.clone();
            let shared = shared.clone();
            let store = store.clone();
            let loader = loader.clone();
            let waker = waker.clone();
            let handle = std::thread::Builder::new()
                .name(format!("trib-adapter-loader-{i}"))
                .spawn(move || loop {
                    let job = rx.lock().expect("loader queue").recv();
                    let Ok((name, ticket)) = job else { return };
                    run_load(&shared, store.as_ref(), &loader, name, &ticket);
                    if let Some(w) = waker.lock().expect("waker").as_ref() {
                        w();
                    }
                })
                .expect("spawn adapter loader thread");
            loaders.push(handle);
        }
        Arc::new(Self {
            shared,
            jobs: Mutex::new(Some(tx)),
            loaders: Mutex::new(loaders),
            store,
            waker,
        })
    }

    /// Stops the loader threads and waits for them: they finish the loads
    /// already queued (their waiters get the results), then exit; later
    /// loads are refused with [`CacheError::Shutdown`]. Idempotent.
    pub fn close(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        let loaders = std::mem::take(&mut *self.loaders.lock().unwrap_or_else(|p| p.into_inner()));
        for t in loaders {
            if t.join().is_err() {
                tracing::error!(target: "trib::serve::cache", "an adapter loader thread panicked");
            }
        }
    }

    /// Registers a callback run after every finished load (the engine uses it
    /// to wake its scheduler loop).
    pub(crate) fn set_waker(&self, w: Waker) {
        *self.waker.lock().expect("waker") = Some(w);
    }

    /// Returns the adapter pinned if resident (a hit), otherwise starts or joins
    /// its load (a miss).
    pub fn acquire(&self, name: &AdapterName) -> Result<Acquire<A>, CacheError> {
        self.acquire_inner(name, true)
    }

    /// Like [`acquire`](Self::acquire) after a ticket resolved: not counted as
    /// a second hit or miss for the same request.
    pub(crate) fn acquire_after_load(&self, name: &AdapterName) -> Result<Acquire<A>, CacheError> {
        self.acquire_inner(name, false)
    }

    fn acquire_inner(&self, name: &AdapterName, count: bool) -> Result<Acquire<A>, CacheError> {
        let mut st = self.shared.state.lock().expect("cache lock");
        st.tick += 1;
        let tick = st.tick;
        match st.slots.get_mut(name) {
            Some(Slot::Ready(r)) => {
                r.pins += 1;
                r.last_used = tick;
                let adapter = r.adapter.clone();
                if count {
                    st.hits += 1;
                }
                Ok(Acquire::Ready(PinnedAdapter {
                    name: name.clone(),
                    adapter,
                    shared: self.shared.clone(),
                }))
            }
            Some(Slot::Loading(t)) => {
                let t = t.clone();
                if count {
                    st.misses += 1;
                    st.coalesced += 1;
                }
                Ok(Acquire::Loading(t))
            }
            None => {
                if count {
                    st.misses += 1;
                }
                let t = self.start_load(&mut st, name)?;
                Ok(Acquire::Loading(t))
            }
        }
    }

    fn start_load(
        &self,
        st: &mut State<A>,
        name: &AdapterName,
    ) -> Result<Arc<LoadTicket>, CacheError> {
        let ticket = LoadTicket::new(name.clone());
        let jobs = self.jobs.lock().expect("jobs");
        let tx = jobs.as_ref().ok_or(CacheError::Shutdown)?;
        tx.send((name.clone(), ticket.clone()))
            .map_err(|_| CacheError::Shutdown)?;
        st.slots.insert(name.clone(), Slot::Loading(ticket.clone()));
        tracing::debug!(target: "trib::serve::cache", adapter = %name, "load queued");
        Ok(ticket)
    }

    /// Explicit load (`POST /v1/adapters`): starts or joins a load, or returns
    /// an already-resolved ticket if resident. Pins nothing.
    pub fn load(&self, name: &AdapterName) -> Result<Arc<LoadTicket>, CacheError> {
        let mut st = self.shared.state.lock().expect("cache lock");
        match st.slots.get(name) {
            Some(Slot::Ready(_)) => {
                let t = LoadTicket::new(name.clone());
                t.resolve(Ok(()));
                Ok(t)
            }
            Some(Slot::Loading(t)) => Ok(t.clone()),
            None => self.start_load(&mut st, name),
        }
    }

    /// Explicit unload. Refused while running sequences use the adapter.
    pub fn unload(&self, name: &AdapterName) -> Result<usize, CacheError> {
        let mut st = self.shared.state.lock().expect("cache lock");
        match st.slots.get(name) {
            Some(Slot::Ready(r)) if r.pins > 0 => Err(CacheError::InUse {
                name: name.clone(),
                pins: r.pins,
            }),
            Some(Slot::Ready(r)) => {
                let bytes = r.bytes;
                st.slots.remove(name);
                st.bytes -= bytes;
                tracing::info!(target: "trib::serve::cache", adapter = %name, bytes, "unloaded");
                Ok(bytes)
            }
            _ => Err(CacheError::NotLoaded { name: name.clone() }),
        }
    }

    /// Whether `name` is resident.
    pub fn is_loaded(&self, name: &AdapterName) -> bool {
        matches!(
            self.shared
                .state
                .lock()
                .expect("cache lock")
                .slots
                .get(name),
            Some(Slot::Ready(_))
        )
    }

    /// The adapter store behind the cache.
    pub fn store(&self) -> &Arc<dyn AdapterStore> {
        &self.store
    }

    /// Current state and counters.
    pub fn stats(&self) -> CacheStats {
        let st = self.shared.state.lock().expect("cache lock");
        let mut rows: Vec<(u64, CachedAdapter)> = st
            .slots
            .iter()
            .map(|(n, s)| match s {
                Slot::Ready(r) => (
                    r.last_used,
                    CachedAdapter {
                        name: n.to_string(),
                        state: "loaded",
                        bytes: r.bytes,
                        pins: r.pins,
                        load_ms: r.load_time.as_secs_f64() * 1e3,
                    },
                ),
                Slot::Loading(_) => (
                    u64::MAX,
                    CachedAdapter {
                        name: n.to_string(),
                        state: "loading",
                        bytes: 0,
                        pins: 0,
                        load_ms: 0.0,
                    },
                ),
            })
            .collect();
        rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
        CacheStats {
            store: self.store.describe(),
            capacity_bytes: self.shared.capacity,
            bytes: st.bytes,
            hits: st.hits,
            misses: st.misses,
            coalesced: st.coalesced,
            loads: st.loads,
            load_failures: st.load_failures,
            evictions: st.evictions,
            over_budget_admissions: st.over_budget,
            load_ms_mean: if st.loads_ok == 0 {
                0.0
            } else {
                st.load_time_total.as_secs_f64() * 1e3 / st.loads_ok as f64
            },
            load_ms_max: st.load_time_max.as_secs_f64() * 1e3,
            adapters: rows.into_iter().map(|(_, r)| r).collect(),
        }
    }
}

impl<A: Send + Sync + 'static> Drop for AdapterCache<A> {
    fn drop(&mut self) {
        // Closing the job channel ends the loader threads after their current job.
        self.jobs.lock().expect("jobs").take();
    }
}

fn run_load<A: Send + Sync + 'static>(
    shared: &Shared<A>,
    store: &dyn AdapterStore,
    loader: &AdapterLoader<A>,
    name: AdapterName,
    ticket: &LoadTicket,
) {
    let t0 = Instant::now();
    // A hostile adapter must never take the server down: a panic in parsing
    // or validation becomes a refusal.
    let parsed = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let files = store
            .fetch(&name)
            .map_err(|e| CacheError::from_store(&name, e))?;
        loader(&files).map_err(|reason| CacheError::Rejected {
            name: name.clone(),
            reason,
        })
    }))
    .unwrap_or_else(|_| {
        Err(CacheError::Rejected {
            name: name.clone(),
            reason: "the adapter loader panicked on these files".into(),
        })
    });
    let elapsed = t0.elapsed();
    let mut st = shared.state.lock().expect("cache lock");
    st.loads += 1;
    let result = match parsed {
        Ok((_, bytes)) if bytes > shared.capacity => Err(CacheError::TooLarge {
            name: name.clone(),
            bytes,
            capacity: shared.capacity,
        }),
        Ok((adapter, bytes)) => {
            if !st.evict_until_fits(bytes, shared.capacity) {
                st.over_budget += 1;
                tracing::warn!(target: "trib::serve::cache", adapter = %name, bytes,
                    "every resident adapter is pinned: admitting over budget until pins are released");
            }
            st.tick += 1;
            let tick = st.tick;
            st.bytes += bytes;
            st.loads_ok += 1;
            st.load_time_total += elapsed;
            st.load_time_max = st.load_time_max.max(elapsed);
            st.slots.insert(
                name.clone(),
                Slot::Ready(Ready {
                    adapter: Arc::new(adapter),
                    bytes,
                    pins: 0,
                    last_used: tick,
                    load_time: elapsed,
                }),
            );
            tracing::info!(target: "trib::serve::cache", adapter = %name, bytes,
                load_ms = elapsed.as_secs_f64() * 1e3, "adapter loaded");
            Ok(())
        }
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        st.load_failures += 1;
        st.slots.remove(&name);
        tracing::warn!(target: "trib::serve::cache", adapter = %name, error = %e, "adapter load failed");
    }
    drop(st);
    ticket.resolve(result);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store that serves any name, whose safetensors bytes are the adapter's
    /// size as ASCII digits; names starting with `missing` do not exist, and
    /// `gate` blocks until released so tests can observe in-flight loads.
    struct FakeStore {
        fetches: AtomicUsize,
        gate: Mutex<bool>,
        gate_cv: Condvar,
    }

    impl FakeStore {
        fn new(open: bool) -> Arc<Self> {
            Arc::new(Self {
                fetches: AtomicUsize::new(0),
                gate: Mutex::new(open),
                gate_cv: Condvar::new(),
            })
        }
        fn open(&self) {
            *self.gate.lock().unwrap() = true;
            self.gate_cv.notify_all();
        }
    }

    impl AdapterStore for FakeStore {
        fn fetch(&self, name: &AdapterName) -> Result<AdapterFiles, StoreError> {
            let mut g = self.gate.lock().unwrap();
            while !*g {
                g = self.gate_cv.wait(g).unwrap();
            }
            drop(g);
            self.fetches.fetch_add(1, Ordering::SeqCst);
            if name.as_str().starts_with("missing") {
                return Err(StoreError::NotFound {
                    name: name.clone(),
                    location: "fake".into(),
                });
            }
            let size = name.as_str().split('-').next_back().unwrap().to_owned();
            Ok(AdapterFiles {
                name: name.clone(),
                config_json: b"{}".to_vec(),
                safetensors: size.into_bytes(),
            })
        }
        fn list(&self) -> Result<Vec<AdapterName>, StoreError> {
            Ok(vec![])
        }
        fn describe(&self) -> String {
            "fake".into()
        }
    }

    fn loader() -> impl Fn(&AdapterFiles) -> Result<(String, usize), String> + Send + Sync + 'static
    {
        |f: &AdapterFiles| {
            let s = String::from_utf8(f.safetensors.clone()).unwrap();
            if f.name.as_str().starts_with("panic") {
                panic!("hostile");
            }
            let n: usize = s
                .parse()
                .map_err(|_| format!("size {s:?} is not a number"))?;
            Ok((f.name.to_string(), n))
        }
    }

    fn n(s: &str) -> AdapterName {
        AdapterName::parse(s).unwrap()
    }

    fn get(c: &AdapterCache<String>, name: &str) -> Result<PinnedAdapter<String>, CacheError> {
        match c.acquire(&n(name))? {
            Acquire::Ready(p) => Ok(p),
            Acquire::Loading(t) => {
                t.wait()?;
                match c.acquire_after_load(&n(name))? {
                    Acquire::Ready(p) => Ok(p),
                    Acquire::Loading(_) => panic!("loaded adapter not resident"),
                }
            }
        }
    }

    #[test]
    fn a_hot_adapter_is_served_without_reloading() {
        let store = FakeStore::new(true);
        let c = AdapterCache::new(
            CacheConfig {
                capacity_bytes: 100,
                loader_threads: 1,
            },
            store.clone(),
            loader(),
        );
        for _ in 0..5 {
            drop(get(&c, "a-10").unwrap());
        }
        let s = c.stats();
        assert_eq!((s.loads, s.hits, s.misses), (1, 4, 1));
        assert_eq!(store.fetches.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn least_recently_used_adapters_are_evicted_by_bytes() {
        let c = AdapterCache::new(
            CacheConfig {
                capacity_bytes: 100,
                loader_threads: 1,
            },
            FakeStore::new(true),
            loader(),
        );
        drop(get(&c, "a-40").unwrap());
        drop(get(&c, "b-40").unwrap());
        drop(get(&c, "a-40").unwrap()); // a is now more recent than b
        drop(get(&c, "c-50").unwrap()); // needs 50: evicts b only (LRU), a stays
        assert!(c.is_loaded(&n("a-40")) && c.is_loaded(&n("c-50")) && !c.is_loaded(&n("b-40")));
        let s = c.stats();
        assert_eq!((s.bytes, s.evictions), (90, 1));
        assert_eq!(s.adapters[0].name, "c-50");
    }

    #[test]
    fn a_pinned_adapter_is_never_evicted_and_the_budget_returns_after_unpinning() {
        let c = AdapterCache::new(
            CacheConfig {
                capacity_bytes: 100,
                loader_threads: 1,
            },
            FakeStore::new(true),
            loader(),
        );
        let pinned = get(&c, "a-60").unwrap();
        let b = get(&c, "b-60").unwrap(); // cannot evict a: admitted over budget
        assert!(c.is_loaded(&n("a-60")));
        let s = c.stats();
        assert_eq!((s.bytes, s.over_budget_admissions), (120, 1));
        drop(b); // b is the only unpinned adapter: evicted to restore the bound
        assert!(c.is_loaded(&n("a-60")) && !c.is_loaded(&n("b-60")));
        assert_eq!(c.stats().bytes, 60);
        assert_eq!(
            c.unload(&n("a-60")),
            Err(CacheError::InUse {
                name: n("a-60"),
                pins: 1
            })
        );
        drop(pinned);
        assert_eq!(c.unload(&n("a-60")), Ok(60));
    }

    #[test]
    fn concurrent_requests_for_one_adapter_coalesce_into_one_load() {
        let store = FakeStore::new(false);
        let c = AdapterCache::new(
            CacheConfig {
                capacity_bytes: 100,
                loader_threads: 2,
            },
            store.clone(),
            loader(),
        );
        let tickets: Vec<_> = (0..8)
            .map(|_| match c.acquire(&n("x-10")).unwrap() {
                Acquire::Loading(t) => t,
                Acquire::Ready(_) => panic!("cannot be resident before the gate opens"),
            })
            .collect();
        assert_eq!(c.stats().adapters[0].state, "loading");
        store.open();
        for t in &tickets {
            t.wait().unwrap();
        }
        let s = c.stats();
        assert_eq!((s.loads, s.misses, s.coalesced), (1, 8, 7));
        assert_eq!(store.fetches.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn failed_loads_reach_every_waiter_and_are_retried_later() {
        let store = FakeStore::new(true);
        let c = AdapterCache::new(
            CacheConfig {
                capacity_bytes: 100,
                loader_threads: 1,
            },
            store.clone(),
            loader(),
        );
        assert!(matches!(
            get(&c, "missing-1"),
            Err(CacheError::NotFound { .. })
        ));
        assert!(matches!(
            get(&c, "bad-notanumber"),
            Err(CacheError::Rejected { .. })
        ));
        assert!(matches!(
            get(&c, "huge-1000"),
            Err(CacheError::TooLarge {
                bytes: 1000,
                capacity: 100,
                ..
            })
        ));
        let e = get(&c, "panic-1").unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
        assert!(matches!(
            get(&c, "missing-1"),
            Err(CacheError::NotFound { .. })
        ));
        let s = c.stats();
        assert_eq!((s.loads, s.load_failures, s.bytes), (5, 5, 0));
        assert!(s.adapters.is_empty());
        // The cache still works after all of that.
        assert_eq!(get(&c, "ok-5").unwrap().adapter(), "ok-5");
    }

    #[test]
    fn explicit_load_and_unload() {
        let c = AdapterCache::new(
            CacheConfig {
                capacity_bytes: 100,
                loader_threads: 1,
            },
            FakeStore::new(true),
            loader(),
        );
        c.load(&n("e-7")).unwrap().wait().unwrap();
        assert!(c.is_loaded(&n("e-7")));
        c.load(&n("e-7")).unwrap().wait().unwrap();
        assert_eq!(c.stats().loads, 1);
        assert_eq!(c.unload(&n("e-7")), Ok(7));
        assert_eq!(
            c.unload(&n("e-7")),
            Err(CacheError::NotLoaded { name: n("e-7") })
        );
        assert_eq!(c.stats().bytes, 0);
    }

    proptest::proptest! {
        #[test]
        fn resident_bytes_never_exceed_capacity_without_pins(sizes in proptest::collection::vec(1usize..60, 1..30)) {
            let c = AdapterCache::new(CacheConfig { capacity_bytes: 100, loader_threads: 1 }, FakeStore::new(true), loader());
            for (i, s) in sizes.iter().enumerate() {
                drop(get(&c, &format!("p{}-{s}", i % 7)).unwrap());
                let st = c.stats();
                proptest::prop_assert!(st.bytes <= 100);
                proptest::prop_assert_eq!(st.bytes, st.adapters.iter().map(|a| a.bytes).sum::<usize>());
            }
        }
    }
}
