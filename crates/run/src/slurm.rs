//! What bertfit asks of Slurm: whether a job still runs, what a submission's
//! tasks are doing, to take a batch script, to cancel a job. Each is one call
//! of Slurm's own client (`squeue`, `sbatch`, `scancel`).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The states in which a job still holds (or waits for) its resources.
fn is_live(state: &str) -> bool {
    matches!(state, "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING" | "SUSPENDED" | "REQUEUED" | "RESIZING" | "REQUEUE_HOLD")
}

/// Whether Slurm job `job` (`1234`, or `1234_5` for an array task) is still
/// pending or running: `None` when Slurm cannot be asked here (no `squeue`).
pub fn job_running(job: &str) -> Option<bool> {
    let tasks = queued(&[job.to_string()]).ok()?;
    Some(tasks.iter().any(|t| is_live(&t.state)))
}

/// A job, or an array task, in Slurm's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// `1234`, or `1234_5` for an array task (one line per task).
    pub id: String,
    /// `PENDING`, `RUNNING`, ...
    pub state: String,
    /// The node it runs on; for a pending one, Slurm's reason (`(Dependency)`).
    pub node: String,
}

impl Queued {
    pub fn live(&self) -> bool {
        is_live(&self.state)
    }
}

/// The queue's jobs and array tasks among `jobs` (job ids): an error when
/// Slurm cannot be asked (no `squeue`, no controller). A job that has left
/// the queue is absent.
pub fn queued(jobs: &[String]) -> Result<Vec<Queued>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let out = Command::new("squeue")
        .args(["--noheader", "--array", "--jobs", &jobs.join(","), "--format", "%i %T %R"])
        .output()
        .context("cannot run squeue (the Slurm client)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        // A job id that has left the queue is an error to squeue.
        if err.contains("Invalid job id") {
            return Ok(Vec::new());
        }
        bail!("squeue failed: {}", err.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (id, state) = (fields.next()?, fields.next()?);
            Some(Queued { id: id.to_string(), state: state.to_string(), node: fields.collect::<Vec<_>>().join(" ") })
        })
        .collect())
}

/// Whether `sbatch` is on PATH.
pub fn has_client() -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("sbatch").is_file()))
}

/// Submits batch script `script` with `args` before it; returns the job id.
/// A refused submission is an error with sbatch's own message.
pub fn sbatch(args: &[String], script: &Path) -> Result<String> {
    let out = Command::new("sbatch").arg("--parsable").args(args).arg(script).output().context("cannot run sbatch (the Slurm client)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let message = err.lines().chain(stdout.lines()).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
        bail!("sbatch refused {}: {message}", script.display());
    }
    // `--parsable`: "JOBID" or "JOBID;CLUSTER".
    let id = stdout.trim().split(';').next().unwrap_or_default().to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch took {} but printed no job id: {:?}", script.display(), stdout.trim());
    }
    Ok(id)
}

/// Cancels `job` (best effort: it may have ended already).
pub fn scancel(job: &str) {
    let _ = Command::new("scancel").arg(job).output();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_states_are_the_queued_ones() {
        for state in ["PENDING", "RUNNING", "COMPLETING"] {
            assert!(is_live(state), "{state}");
        }
        for state in ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"] {
            assert!(!is_live(state), "{state}");
        }
    }
}
