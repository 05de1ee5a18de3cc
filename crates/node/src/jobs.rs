//! The node's training-job queue: ModelFactory jobs submitted over HTTP run
//! one at a time on a dedicated thread (training saturates the CPU; two at
//! once would only slow both), report progress as events that clients
//! replay and follow (server-sent events), and can be cancelled queued or
//! running.
//!
//! Every job has an owner (the account that signed its submission,
//! `api/jobs.rs`), and an owner may have at most `[jobs]
//! max_active_per_owner` jobs queued or running. `datanet@version` sources
//! resolve through the node's
//! [`DatanetService`](crate::datanets::DatanetService): the version root is
//! checked against the ledger and a permissioned datanet is refused unless
//! the job's owner has access. A source that is a host file must lie under
//! a directory the operator lists in `[jobs] data_dirs` (none by default),
//! and `model.base` must name a file in the node's models directory; the
//! refusals name the path, never the file's bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::broadcast;
use trib_client::wire::{JobDatanet, JobStatus, JobView};
use trib_model::factory::{
    train, CancelFlag, DatanetResolver, FactoryError, JobConfig, ProgressEvent, ResolvedDatanet,
    SourceRef, TrainOptions,
};
use trib_types::Address;

use crate::config::JobsConfig;
use crate::datanets::DatanetService;

/// Why the job queue refused a request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
    /// The job TOML does not parse or does not validate; the message names
    /// the field and what is wrong with it.
    #[error(transparent)]
    BadConfig(#[from] FactoryError),
    /// The job's `model.base` is not a file in the node's models
    /// directory: name one of the files there (`GET /v1/models/base` lists
    /// them). Whether a path elsewhere exists is not said.
    #[error("base model {base:?} is not a model in this node's models directory (GET /v1/models/base lists them; the operator adds models there)")]
    UnknownBaseModel {
        /// The base model the job names.
        base: String,
    },
    /// A `[data] sources` path outside the directories the operator allows
    /// (`[jobs] data_dirs`). Whether the file exists is not said.
    #[error("training source {source_path:?} is not under a directory this node allows jobs to read ({allowed}); train on a datanet version (`name@version`) instead")]
    SourceNotAllowed {
        /// The path the job names.
        source_path: String,
        /// The allowed directories, in words.
        allowed: String,
    },
    /// The owner already has `max` jobs queued or running.
    #[error("{owner} already has {active} jobs queued or running (at most {max} per owner on this node): wait for one to end or cancel one")]
    TooManyJobs {
        /// The owner.
        owner: Address,
        /// Its queued and running jobs.
        active: usize,
        /// The node's limit (`[jobs] max_active_per_owner`).
        max: usize,
    },
    /// No job with this id on this node (ids count from 1 per node run, so
    /// jobs of an earlier run are gone).
    #[error("no job {id}")]
    NotFound {
        /// The id asked for.
        id: u64,
    },
    /// The job has already ended (done, failed or cancelled): there is
    /// nothing left to cancel.
    #[error("job {id} already ended ({status:?})")]
    Finished {
        /// The job.
        id: u64,
        /// How it ended.
        status: JobStatus,
    },
    /// The job thread has stopped (the node is shutting down): submit the
    /// job again once the node is back.
    #[error("the job thread has stopped")]
    WorkerStopped,
}

struct Job {
    view: JobView,
    config: JobConfig,
    cancel: CancelFlag,
    events: Vec<serde_json::Value>,
    notify: broadcast::Sender<serde_json::Value>,
}

struct Inner {
    jobs: Mutex<BTreeMap<u64, Job>>,
    next_id: AtomicU64,
    dir: PathBuf,
    models_dir: PathBuf,
    /// The per-owner cap and the host directories jobs may read.
    limits: JobsConfig,
    datanets: Arc<DatanetService>,
    /// Where a finished job's adapter and gradient cache are installed for
    /// serving (`<home>/adapters`), when the node serves from that
    /// directory; `None` when `[serving] adapter_store` names an object
    /// store (the operator uploads there).
    install_to: Option<PathBuf>,
}

/// What the job thread is told.
enum Msg {
    /// Run this job (unless it was cancelled while queued).
    Run(u64),
    /// Exit (node shutdown).
    Stop,
}

/// The queue (one per node); cheap to clone.
#[derive(Clone)]
pub(crate) struct JobQueue {
    inner: Arc<Inner>,
    submit: mpsc::Sender<Msg>,
    /// The job thread, until [`JobQueue::shutdown`] joins it.
    worker: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

struct NodeResolver {
    datanets: Arc<DatanetService>,
    owner: Option<Address>,
}

impl DatanetResolver for NodeResolver {
    fn resolve(&self, name: &str, version: &str) -> Result<ResolvedDatanet, String> {
        let v: u32 = version
            .parse()
            .map_err(|_| format!("{name}@{version}: the node resolves numbered versions only"))?;
        self.datanets
            .resolve_rows(name, v, self.owner.as_ref())
            .map_err(|e| e.to_string())
    }
}

/// The numbered `datanet@version` sources of a job (the only ones the
/// node resolves), in job order: what registering its adapter records.
fn datanet_versions(config: &JobConfig) -> Vec<JobDatanet> {
    config
        .sources()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| match s {
            SourceRef::Datanet { name, version } => Some(JobDatanet {
                version: version.parse().ok()?,
                name,
            }),
            SourceRef::File { .. } => None,
        })
        .collect()
}

/// A terminal event ends every stream.
fn is_terminal(e: &serde_json::Value) -> bool {
    matches!(
        e.get("event").and_then(|v| v.as_str()),
        Some("done" | "failed" | "cancelled")
    )
}

impl JobQueue {
    /// Starts the worker thread. Job outputs go under `dir/<id>`; a finished
    /// job's adapter is installed under `install_to/<adapter id>` when given.
    pub(crate) fn start(
        dir: &Path,
        models_dir: &Path,
        datanets: Arc<DatanetService>,
        install_to: Option<PathBuf>,
        limits: JobsConfig,
    ) -> Self {
        let (submit, rx) = mpsc::channel::<Msg>();
        let inner = Arc::new(Inner {
            jobs: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            dir: dir.to_path_buf(),
            models_dir: models_dir.to_path_buf(),
            limits,
            datanets,
            install_to,
        });
        // The worker holds the queue weakly: when the node drops its router
        // the services (and the ledger they reach) close at once, and the
        // thread ends with the channel.
        let worker = Arc::downgrade(&inner);
        let spawned = std::thread::Builder::new()
            .name("trib-jobs".into())
            .spawn(move || {
                while let Ok(Msg::Run(id)) = rx.recv() {
                    let Some(inner) = worker.upgrade() else {
                        return;
                    };
                    run_job(&inner, id);
                }
            });
        let worker = match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(target: "trib::node::jobs", error = %e, "cannot start the job thread; jobs will stay queued");
                None
            }
        };
        JobQueue {
            inner,
            submit,
            worker: Arc::new(Mutex::new(worker)),
        }
    }

    /// Stops the job thread and waits for it (node shutdown): queued jobs
    /// are cancelled, a running one is asked to stop at its next
    /// micro-batch. When this returns the thread holds nothing of the node
    /// (its datanet store, the ledger behind it). Idempotent; later
    /// submissions fail.
    pub(crate) fn shutdown(&self) {
        {
            let mut jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
            for (id, job) in jobs.iter_mut() {
                if job.view.status.is_final() {
                    continue;
                }
                job.cancel.cancel();
                if job.view.status == JobStatus::Queued {
                    job.view.status = JobStatus::Cancelled;
                    push(job, serde_json::json!({"event": "cancelled", "step": 0}));
                }
                tracing::info!(target: "trib::node::jobs", id, "cancelled by node shutdown");
            }
        }
        let _ = self.submit.send(Msg::Stop);
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = worker {
            if t.join().is_err() {
                tracing::error!(target: "trib::node::jobs", "the job thread panicked");
            }
            tracing::info!(target: "trib::node::jobs", "job thread joined");
        }
    }

    /// Parses and queues a job (TOML text) owned by `owner`, whose access
    /// is what permissioned datanets are checked against.
    pub(crate) fn submit(&self, toml: &str, owner: Address) -> Result<JobView, JobError> {
        let mut config = JobConfig::from_toml_str(toml, Path::new(""))?;
        config.model.base = self.base_model(&config.model.base)?;
        self.check_sources(&config)?;
        if let Some(r) = &config.checkpoint.resume_from {
            return Err(JobError::SourceNotAllowed {
                source_path: r.clone(),
                allowed: "checkpoint.resume_from: a node job starts from its base model".into(),
            });
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
        let out = self.inner.dir.join(id.to_string());
        config.output.dir = out.clone();
        config.validate()?;
        let view = JobView {
            id,
            name: config.name.clone(),
            owner: Some(owner),
            status: JobStatus::Queued,
            output_dir: out,
            step: 0,
            total_steps: 0,
            loss: None,
            error: None,
            summary: None,
            datanets: datanet_versions(&config),
        };
        let (notify, _) = broadcast::channel(256);
        let mut jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let active = jobs
            .values()
            .filter(|j| j.view.owner == Some(owner) && !j.view.status.is_final())
            .count();
        let max = self.inner.limits.max_active_per_owner;
        if active >= max {
            return Err(JobError::TooManyJobs { owner, active, max });
        }
        jobs.insert(
            id,
            Job {
                view: view.clone(),
                config,
                cancel: CancelFlag::new(),
                events: Vec::new(),
                notify,
            },
        );
        drop(jobs);
        self.submit
            .send(Msg::Run(id))
            .map_err(|_| JobError::WorkerStopped)?;
        tracing::info!(target: "trib::node::jobs", id, name = ?view.name, "job queued");
        Ok(view)
    }

    /// The path of `model.base` in the node's models directory: a file
    /// name there, or a path that lies in it (no `..`). Symbolic links the
    /// operator put into the directory are followed.
    fn base_model(&self, base: &str) -> Result<String, JobError> {
        let dir = &self.inner.models_dir;
        let refused = || JobError::UnknownBaseModel { base: base.into() };
        let p = Path::new(base);
        if p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(refused());
        }
        let candidate = if p.is_absolute() {
            p.strip_prefix(dir).map_err(|_| refused())?;
            p.to_path_buf()
        } else {
            dir.join(p)
        };
        if !candidate.exists() {
            return Err(refused());
        }
        Ok(candidate.display().to_string())
    }

    /// Refuses a source path outside `[jobs] data_dirs` (`..` and symbolic
    /// links resolved first).
    fn check_sources(&self, config: &JobConfig) -> Result<(), JobError> {
        let allowed: Vec<PathBuf> = self
            .inner
            .limits
            .data_dirs
            .iter()
            .filter_map(|d| d.canonicalize().ok())
            .collect();
        for source in config.sources()? {
            let SourceRef::File { path } = source else {
                continue;
            };
            let inside = path
                .canonicalize()
                .is_ok_and(|p| allowed.iter().any(|d| p.starts_with(d)));
            if !inside {
                return Err(JobError::SourceNotAllowed {
                    source_path: path.display().to_string(),
                    allowed: if allowed.is_empty() {
                        "none: [jobs] data_dirs is empty".into()
                    } else {
                        format!(
                            "[jobs] data_dirs: {}",
                            allowed
                                .iter()
                                .map(|d| d.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                });
            }
        }
        Ok(())
    }

    pub(crate) fn list(&self) -> Vec<JobView> {
        let jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.values().map(|j| j.view.clone()).collect()
    }

    pub(crate) fn get(&self, id: u64) -> Result<JobView, JobError> {
        let jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.get(&id)
            .map(|j| j.view.clone())
            .ok_or(JobError::NotFound { id })
    }

    /// Asks a job to stop: a queued job is cancelled at once, a running one
    /// at its next micro-batch.
    pub(crate) fn cancel(&self, id: u64) -> Result<JobView, JobError> {
        let mut jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let job = jobs.get_mut(&id).ok_or(JobError::NotFound { id })?;
        if job.view.status.is_final() {
            return Err(JobError::Finished {
                id,
                status: job.view.status,
            });
        }
        job.cancel.cancel();
        if job.view.status == JobStatus::Queued {
            job.view.status = JobStatus::Cancelled;
            push(job, serde_json::json!({"event": "cancelled", "step": 0}));
        }
        tracing::info!(target: "trib::node::jobs", id, "cancellation requested");
        Ok(job.view.clone())
    }

    /// Every event so far and a receiver of the following ones (`None`
    /// once the job has ended).
    pub(crate) fn follow(
        &self,
        id: u64,
    ) -> Result<
        (
            Vec<serde_json::Value>,
            Option<broadcast::Receiver<serde_json::Value>>,
        ),
        JobError,
    > {
        let jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let job = jobs.get(&id).ok_or(JobError::NotFound { id })?;
        let rx = (!job.view.status.is_final()).then(|| job.notify.subscribe());
        Ok((job.events.clone(), rx))
    }

    /// Whether `e` ends a stream.
    pub(crate) fn is_terminal(e: &serde_json::Value) -> bool {
        is_terminal(e)
    }
}

fn push(job: &mut Job, event: serde_json::Value) {
    let _ = job.notify.send(event.clone());
    job.events.push(event);
}

fn with_job(inner: &Inner, id: u64, f: impl FnOnce(&mut Job)) {
    let mut jobs = inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(j) = jobs.get_mut(&id) {
        f(j);
    }
}

fn run_job(inner: &Arc<Inner>, id: u64) {
    let (config, cancel, owner) = {
        let mut jobs = inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let Some(job) = jobs.get_mut(&id) else { return };
        if job.view.status != JobStatus::Queued {
            return;
        }
        job.view.status = JobStatus::Running;
        (job.config.clone(), job.cancel.clone(), job.view.owner)
    };
    tracing::info!(target: "trib::node::jobs", id, "job started");
    let progress_inner = inner.clone();
    let progress = Arc::new(move |e: &ProgressEvent| {
        let mut v = serde_json::to_value(e).unwrap_or(serde_json::Value::Null);
        with_job(&progress_inner, id, |job| {
            match e {
                ProgressEvent::Started { total_steps, .. } => job.view.total_steps = *total_steps,
                ProgressEvent::Step(m) => {
                    job.view.step = m.step;
                    job.view.loss = Some(m.loss);
                    if m.step > 0 && job.view.total_steps >= m.step {
                        let eta =
                            m.elapsed_s / m.step as f64 * (job.view.total_steps - m.step) as f64;
                        v["eta_s"] = serde_json::json!(eta);
                    }
                }
                // Terminal events are the node's own (done/cancelled below).
                ProgressEvent::Cancelled { .. } | ProgressEvent::Finished { .. } => return,
                _ => {}
            }
            push(job, v);
        });
    });
    let opts = TrainOptions {
        resolver: Some(Arc::new(NodeResolver {
            datanets: inner.datanets.clone(),
            owner,
        })),
        progress: Some(progress),
        cancel: cancel.clone(),
        progress_bar: false,
        model: None,
    };
    let result = train(&config, opts);
    // Install a finished adapter (and its gradient cache, so paid answers
    // can be attributed by DataInf too) where the node serves adapters from.
    let installed = match (&result, &inner.install_to) {
        (Ok(outcome), Some(root)) if !cancel.is_cancelled() => {
            let target = root.join(outcome.summary.adapter_id.to_string());
            let got = install_adapter(
                &outcome.adapter_dir,
                outcome.summary.gradient_cache.as_deref(),
                &target,
            );
            match &got {
                Ok(n) => {
                    tracing::info!(target: "trib::node::jobs", id, adapter_files = n.adapter_files, cache_files = n.cache_files, dir = %target.display(), "adapter installed for serving")
                }
                Err(e) => {
                    tracing::warn!(target: "trib::node::jobs", id, error = %e, dir = %target.display(), "cannot install the adapter for serving")
                }
            }
            Some(got.map(|_| target).map_err(|e| e.to_string()))
        }
        _ => None,
    };
    with_job(inner, id, |job| match result {
        // Cancellation may surface as an early return or as an error from
        // the interrupted step; either way the job was cancelled.
        _ if cancel.is_cancelled() => {
            job.view.status = JobStatus::Cancelled;
            let step = job.view.step;
            push(job, serde_json::json!({"event": "cancelled", "step": step}));
        }
        Ok(outcome) => {
            job.view.status = JobStatus::Done;
            push(
                job,
                serde_json::json!({
                    "event": "done",
                    "adapter_dir": outcome.adapter_dir,
                    "adapter_id": outcome.summary.adapter_id,
                    "installed": installed.as_ref().and_then(|r| r.as_ref().ok()),
                    "install_error": installed.as_ref().and_then(|r| r.as_ref().err()),
                }),
            );
            job.view.summary = Some(outcome.summary);
        }
        Err(e) => {
            job.view.status = JobStatus::Failed;
            job.view.error = Some(e.to_string());
            push(
                job,
                serde_json::json!({"event": "failed", "error": e.to_string()}),
            );
        }
    });
    tracing::info!(target: "trib::node::jobs", id, "job ended");
}

/// What [`install_adapter`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InstalledAdapter {
    /// PEFT files copied into the served directory.
    pub(crate) adapter_files: usize,
    /// Gradient-cache files copied into its `gradient_cache/` (0: the job
    /// wrote none, so answers settle by token spans alone).
    pub(crate) cache_files: usize,
}

/// Installs a finished job's adapter for serving: the PEFT files of
/// `adapter_dir` (files only) go to `target` (`<home>/adapters/<ID>/`) and,
/// when the job wrote one, its gradient cache (`jobs/N/gradient_cache/`,
/// beside the adapter) goes to `target/gradient_cache/`, where the
/// answer-time gradient attribution reads it
/// ([`GradientCache::dir_for`](trib_model::factory::GradientCache::dir_for)).
///
/// Files are copied into a sibling staging folder that is renamed into
/// place, so a failed copy leaves no half-installed adapter; a previous
/// install of the same id (same content) is replaced.
pub(crate) fn install_adapter(
    adapter_dir: &Path,
    gradient_cache: Option<&Path>,
    target: &Path,
) -> std::io::Result<InstalledAdapter> {
    fn copy_files(from: &Path, to: &Path) -> std::io::Result<usize> {
        std::fs::create_dir_all(to)?;
        let mut n = 0;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name()))?;
                n += 1;
            }
        }
        Ok(n)
    }
    let name = target.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("adapter target {} has no folder name", target.display()),
        )
    })?;
    let mut staging_name = name.to_os_string();
    staging_name.push(".installing");
    let staging = target.with_file_name(staging_name);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let copied = (|| {
        let adapter_files = copy_files(adapter_dir, &staging)?;
        let cache_files = match gradient_cache {
            Some(cache) if cache.is_dir() => copy_files(
                cache,
                &trib_model::factory::GradientCache::dir_for(&staging),
            )?,
            _ => 0,
        };
        Ok(InstalledAdapter {
            adapter_files,
            cache_files,
        })
    })();
    let installed = match copied {
        Ok(i) => i,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if target.exists() {
        std::fs::remove_dir_all(target)?;
    }
    std::fs::rename(&staging, target)?;
    tracing::info!(
        target: "trib::node::jobs",
        dir = %target.display(),
        adapter_files = installed.adapter_files,
        cache_files = installed.cache_files,
        "adapter installed for serving"
    );
    Ok(installed)
}

#[cfg(test)]
mod install_tests {
    use super::*;

    #[test]
    fn installing_copies_the_adapter_and_its_gradient_cache_and_replaces_an_old_install() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("jobs/1");
        std::fs::create_dir_all(job.join("adapter")).unwrap();
        std::fs::create_dir_all(job.join("gradient_cache")).unwrap();
        std::fs::write(job.join("adapter/adapter_model.safetensors"), b"w").unwrap();
        std::fs::write(job.join("adapter/adapter_config.json"), b"{}").unwrap();
        std::fs::write(job.join("gradient_cache/index.json"), b"{}").unwrap();
        std::fs::write(job.join("gradient_cache/gradients.safetensors"), b"g").unwrap();
        let target = dir.path().join("adapters/abc");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("stale.txt"), b"old").unwrap();
        let got = install_adapter(
            &job.join("adapter"),
            Some(&job.join("gradient_cache")),
            &target,
        )
        .unwrap();
        assert_eq!(
            got,
            InstalledAdapter {
                adapter_files: 2,
                cache_files: 2
            }
        );
        assert!(!target.join("stale.txt").exists());
        assert_eq!(
            std::fs::read(target.join("gradient_cache/gradients.safetensors")).unwrap(),
            b"g"
        );
        assert!(!dir.path().join("adapters/abc.installing").exists());
    }

    #[test]
    fn a_job_without_a_gradient_cache_installs_the_adapter_alone_and_a_missing_source_leaves_nothing(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let adapter = dir.path().join("adapter");
        std::fs::create_dir_all(&adapter).unwrap();
        std::fs::write(adapter.join("adapter_model.safetensors"), b"w").unwrap();
        let target = dir.path().join("adapters/abc");
        let got = install_adapter(&adapter, None, &target).unwrap();
        assert_eq!(got.cache_files, 0);
        assert!(!target.join("gradient_cache").exists());

        let other = dir.path().join("adapters/def");
        assert!(install_adapter(&dir.path().join("missing"), None, &other).is_err());
        assert!(!other.exists());
        assert!(!dir.path().join("adapters/def.installing").exists());
    }
}

/// A finished job installed with [`install_adapter`] is what the node
/// serves: its paid answers settle with the gradient share (DataInf over
/// the job's gradient cache) combined with the spans, and replay.
#[cfg(test)]
mod installed_job_tests {
    use std::sync::Arc;

    use trib_ledger::{Action, PayoutRole};
    use trib_model::factory::{train, JobConfig, TrainOptions};
    use trib_types::{Amount, Hash};

    use super::{install_adapter, NodeResolver};
    use crate::attribution::tests::{alice_file, World, DISTINCTIVE};
    use trib_attribution::answer::{DATAINF, TOKEN_SPANS_DATAINF};

    #[test]
    fn a_paid_answer_for_an_installed_job_settles_by_spans_and_datainf_verifies_and_names_an_edited_score(
    ) {
        let w = World::new();
        for k in [&w.alice, &w.bob, &w.carol] {
            w.submit(
                &w.producer,
                Action::Transfer {
                    to: k.address(),
                    amount: Amount::open(100),
                },
            );
        }
        w.block();
        let bob_text = "Copper kettles hang above the bakery door in the square, and the baker polishes them each Sunday while the bread cools on racks by the open window.";
        let (datanet, ids) = w.publish_datanet(
            "facts",
            &[
                (&w.alice, "alice.txt", alice_file()),
                (&w.bob, "bob.txt", bob_text.to_string()),
            ],
        );
        let base = w.home.load_config().unwrap().base_model.unwrap();
        let run = w.home.root().join("jobs/1");
        let job = JobConfig::from_toml_str(
            &format!(
                "name = \"facts-job\"\n[model]\nbase = \"{}\"\n[data]\nsources = [\"facts@1\"]\nformat = \"text\"\nmax_length = 32\npacking = true\nvalidation_fraction = 0.0\n[lora]\nr = 2\nalpha = 4\ndropout = 0.0\ntarget_modules = [\"q_proj\", \"v_proj\"]\n[train]\nlearning_rate = 1e-3\nbatch_size = 2\nepochs = 1\nseed = 5\n[gradient_cache]\nprojection_dim = 64\n[output]\ndir = \"{}\"\n",
                base.display(),
                run.display()
            ),
            std::path::Path::new(""),
        )
        .unwrap();
        let out = train(
            &job,
            TrainOptions {
                resolver: Some(Arc::new(NodeResolver {
                    datanets: w.datanets.clone(),
                    owner: Some(w.producer.address()),
                })),
                ..TrainOptions::default()
            },
        )
        .unwrap();
        let cache = out
            .summary
            .gradient_cache
            .clone()
            .expect("the job wrote a gradient cache");
        let id = out.summary.adapter_id;
        let installed = install_adapter(
            &out.adapter_dir,
            Some(&cache),
            &w.home.root().join("adapters").join(id.to_string()),
        )
        .unwrap();
        assert!(
            installed.adapter_files >= 2 && installed.cache_files == 2,
            "{installed:?}"
        );

        w.commit(
            &w.producer,
            crate::test_fixtures::register_base_model(&base),
        );
        let info = crate::models::describe_model(&base).unwrap();
        w.commit(
            &w.producer,
            Action::RegisterAdapter {
                adapter: id,
                base: info.id,
                name: "facts-lora".into(),
                datanets: vec![(datanet, 1)],
                config_hash: out.summary.config_hash,
                metrics_hash: Hash::of(b"metrics"),
                price_in_per_1k: Amount::parse_open("0.002").unwrap(),
                price_out_per_1k: Amount::parse_open("0.004").unwrap(),
            },
        );
        w.commit(
            &w.carol,
            Action::ApproveOperator {
                operator: w.producer.address(),
                allowance: Amount::open(10),
            },
        );

        let (stored, receipt) = w.settle(
            "facts-lora",
            "What do the village notes say about the quokkas?",
            &format!("The notes say: {DISTINCTIVE}"),
        );

        // Settled by spans and DataInf: the receipt pays the combined weights.
        assert!(
            [TOKEN_SPANS_DATAINF, DATAINF].contains(&receipt.method.as_str()),
            "{}",
            receipt.method
        );
        assert!(receipt.method.contains("datainf"));
        let a = stored.attribution.as_ref().unwrap();
        let grad = a.gradient.as_ref().expect("per-row scores stored");
        assert_eq!(grad.rows.len(), grad.scores.len());
        assert!(!grad.rows.is_empty());
        let gradient = a.evidence.gradient.clone().expect("a gradient part");
        assert!(!gradient.weights.is_empty());
        assert_eq!(a.evidence.with_gradient(gradient).unwrap(), a.evidence);
        let paid_weights: Vec<_> = a
            .evidence
            .weights
            .iter()
            .map(|w| (w.contribution, w.weight))
            .collect();
        assert_eq!(receipt.weights, paid_weights);
        assert_eq!(receipt.evidence_hash, a.evidence.evidence_hash);
        let paid: std::collections::BTreeSet<_> = receipt
            .lines
            .iter()
            .filter_map(|l| match l.role {
                PayoutRole::Contributor { contribution } => Some(contribution),
                _ => None,
            })
            .collect();
        assert!(paid.iter().all(|c| ids.contains(c)), "{paid:?}");
        assert!(paid.contains(&ids[0]), "alice's quoted row is paid");
        assert_eq!(
            receipt.lines.iter().map(|l| l.amount.0).sum::<u128>(),
            receipt.fee.0
        );
        w.serving.verify(&stored, &receipt).unwrap();

        // A stored gradient score edited beyond tolerance is named.
        let mut edited = stored.clone();
        let g = edited
            .attribution
            .as_mut()
            .unwrap()
            .gradient
            .as_mut()
            .unwrap();
        let scale = g.scores.iter().fold(0f64, |m, s| m.max(s.abs()));
        g.scores[0] += 0.5 * scale.max(1e-6);
        let row = g.rows[0];
        let problems = w.serving.verify(&edited, &receipt).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains(&format!("gradient score of row {row}"))),
            "{problems:?}"
        );
    }
}
