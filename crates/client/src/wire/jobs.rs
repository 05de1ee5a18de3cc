//! JSON shapes of the training-job routes (`/v1/jobs`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schema;
use trib_model::factory::TrainingSummary;
use trib_types::Address;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for the worker.
    Queued,
    /// Training.
    Running,
    /// Finished; the adapter is written.
    Done,
    /// Stopped with an error.
    Failed,
    /// Cancelled (queued or running).
    Cancelled,
}

impl JobStatus {
    /// Whether the job has stopped (done, failed or cancelled): no more
    /// events follow.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// Id (from 1, per node run).
    pub id: u64,
    /// The job's name.
    pub name: Option<String>,
    /// Who submitted it (its datanet access is checked).
    #[schema(value_type = Option<schema::Address>)]
    pub owner: Option<Address>,
    /// Status.
    pub status: JobStatus,
    /// Output directory.
    #[schema(value_type = String)]
    pub output_dir: PathBuf,
    /// Last step done and total steps.
    pub step: u64,
    /// Total optimiser steps (once known).
    pub total_steps: u64,
    /// Last training loss.
    pub loss: Option<f64>,
    /// Error message when failed.
    pub error: Option<String>,
    /// The training summary when done: the adapter's content id, the base
    /// model's hash, the prices and the evaluations its metrics hash covers.
    #[schema(value_type = Option<Object>)]
    pub summary: Option<TrainingSummary>,
    /// The datanet versions it trains on (`name@version` sources), what an
    /// adapter registration records (`trib factory register`).
    #[serde(default)]
    pub datanets: Vec<JobDatanet>,
}

/// A datanet version a job trains on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobDatanet {
    /// The datanet's name.
    pub name: String,
    /// The published version.
    pub version: u32,
}
