//! What a worker asks of Slurm: whether a job still runs.

use std::process::Command;

/// Whether Slurm job `job` (`1234`, or `1234_5` for an array task) is still
/// pending or running: `None` when Slurm cannot be asked here (no `squeue`).
pub fn job_running(job: &str) -> Option<bool> {
    let out = Command::new("squeue").args(["--noheader", "--jobs", job, "--format", "%T"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // An unknown (long finished) job id is an error to squeue.
        let err = String::from_utf8_lossy(&out.stderr);
        return err.contains("Invalid job id").then_some(false);
    }
    Some(
        text.lines().any(|state| {
            matches!(state.trim(), "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING" | "SUSPENDED" | "REQUEUED" | "RESIZING")
        }),
    )
}
