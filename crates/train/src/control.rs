//! How a training run is driven from outside: where it checkpoints, which run
//! it belongs to, when it stops on request, where its progress goes. Shared by
//! fine-tuning and pre-training.

use crate::checkpoint::Checkpoints;
use crate::progress::ProgressTarget;

#[derive(Default)]
pub struct RunControl<'a> {
    pub checkpoints: Option<&'a Checkpoints>,
    /// The identity of the whole run (a hash of its resolved configuration):
    /// a checkpoint made by another run is never continued.
    pub identity: Option<String>,
    /// Stop (as if killed, right after a checkpoint) after this many optimizer steps.
    pub stop_after_steps: Option<u64>,
    pub progress: ProgressTarget,
}

impl RunControl<'_> {
    pub fn quiet(&self) -> bool {
        matches!(self.progress, ProgressTarget::Quiet)
    }

    /// Whether the run is to stop after `step`, as a kill would.
    pub fn stops_at(&self, step: u64) -> bool {
        self.stop_after_steps == Some(step)
    }
}
