//! Progress: events for callers (the node streams them over SSE), a terminal
//! progress bar, and the metrics JSONL file.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::error::{FactoryError, Result};

/// One optimiser step's metrics (one line of `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// 1-based optimiser step just completed.
    pub step: u64,
    /// 0-based epoch the step belongs to.
    pub epoch: u32,
    /// Mean cross-entropy over the step's target tokens.
    pub loss: f64,
    /// Learning rate used for the step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens (real, not padding) processed in the step.
    pub tokens: u64,
    /// Tokens per second over the step.
    pub tokens_per_s: f64,
    /// Seconds since training (this run) started.
    pub elapsed_s: f64,
}

/// Before or after training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalPhase {
    /// The base model (adapter at its initial, zero-update state).
    Before,
    /// The trained adapter.
    After,
}

/// What a running job reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    /// Data is ready and the loop starts.
    Started {
        /// Optimiser steps in the whole job.
        total_steps: u64,
        /// Step the loop starts from (non-zero after resume).
        start_step: u64,
        /// Training examples.
        train_examples: u64,
        /// Validation examples.
        validation_examples: u64,
    },
    /// Validation loss was measured.
    Evaluated {
        /// Before or after training.
        phase: EvalPhase,
        /// Mean cross-entropy per target token.
        loss: f64,
        /// `exp(loss)`.
        perplexity: f64,
        /// Target tokens evaluated.
        tokens: u64,
    },
    /// An optimiser step finished.
    Step(StepMetrics),
    /// A checkpoint was written.
    Checkpoint {
        /// The step it captures.
        step: u64,
        /// Its directory.
        path: PathBuf,
    },
    /// Per-example gradients are being cached.
    GradientCache {
        /// Examples done.
        done: u64,
        /// Examples in all.
        total: u64,
    },
    /// The job finished; the adapter and summary are written.
    Finished {
        /// The adapter directory.
        adapter_dir: PathBuf,
    },
    /// The job stopped on its cancellation flag.
    Cancelled {
        /// The last completed step.
        step: u64,
    },
}

/// A callback receiving every progress event (e.g. forwarding to a channel).
pub type ProgressFn = Arc<dyn Fn(&ProgressEvent) + Send + Sync>;

/// A shared flag that stops a running job at the next micro-batch boundary.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks the job to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Fans events out to the callback, the terminal bar and the metrics file.
pub(crate) struct Reporter {
    callback: Option<ProgressFn>,
    bar: Option<ProgressBar>,
    metrics: BufWriter<File>,
    metrics_path: PathBuf,
}

impl Reporter {
    /// Opens `metrics.jsonl`: appending when resuming, truncated otherwise.
    pub(crate) fn new(
        metrics_path: &Path,
        append: bool,
        callback: Option<ProgressFn>,
        show_bar: bool,
    ) -> Result<Self> {
        let f = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(metrics_path)
            .map_err(|e| FactoryError::io(metrics_path, e))?;
        let bar = (show_bar && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
                )
                .expect("static template")
                .progress_chars("█▉▊▋▌▍▎▏ "),
            );
            b
        });
        Ok(Reporter {
            callback,
            bar,
            metrics: BufWriter::new(f),
            metrics_path: metrics_path.to_path_buf(),
        })
    }

    pub(crate) fn emit(&mut self, ev: ProgressEvent) -> Result<()> {
        match &ev {
            ProgressEvent::Started {
                total_steps,
                start_step,
                ..
            } => {
                if let Some(b) = &self.bar {
                    b.set_length(*total_steps);
                    b.set_position(*start_step);
                    b.reset_eta();
                }
            }
            ProgressEvent::Step(m) => {
                let line = serde_json::to_string(m).expect("metrics serialise");
                writeln!(self.metrics, "{line}")
                    .map_err(|e| FactoryError::io(&self.metrics_path, e))?;
                self.metrics
                    .flush()
                    .map_err(|e| FactoryError::io(&self.metrics_path, e))?;
                if let Some(b) = &self.bar {
                    b.set_position(m.step);
                    b.set_message(format!(
                        "loss {:.4}  lr {:.2e}  {:.0} tok/s",
                        m.loss, m.lr, m.tokens_per_s
                    ));
                }
            }
            ProgressEvent::Evaluated {
                phase,
                loss,
                perplexity,
                ..
            } => {
                if let Some(b) = &self.bar {
                    b.println(format!(
                        "validation ({phase:?}): loss {loss:.4}, perplexity {perplexity:.2}"
                    ));
                }
            }
            ProgressEvent::Finished { .. } | ProgressEvent::Cancelled { .. } => {
                if let Some(b) = &self.bar {
                    b.finish();
                }
            }
            _ => {}
        }
        if let Some(cb) = &self.callback {
            cb(&ev);
        }
        Ok(())
    }
}
