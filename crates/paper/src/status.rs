//! `reproduce NAME --status`: where each run of the grid stands, from the
//! results folder (finished runs, locks, logs) and, for the last `--slurm`
//! submission, Slurm's queue: done, running (where, which job), queued,
//! failed (its log and the log's last line), missing (not started), or
//! cannot run here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use bertfit_run::run_lock::{self, Owner};
use bertfit_run::slurm::{self, Queued};
use bertfit_run::{PreparedPretrain, summary};

use crate::cluster::{Jobs, slurm_dir};
use crate::grid::Grid;
use crate::plan::Planned;
use crate::runs::{Runs, run_label};
use crate::workers::last_line;

/// Where one run stands.
enum State {
    Done(String),
    Running(Owner),
    Queued(Queued),
    Failed { log: PathBuf, last: String },
    Missing,
    Unavailable(String),
}

impl State {
    fn word(&self) -> &'static str {
        match self {
            Self::Done(_) => "done",
            Self::Running(_) => "running",
            Self::Queued(_) => "queued",
            Self::Failed { .. } => "failed",
            Self::Missing => "missing",
            Self::Unavailable(_) => "cannot run here",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Done(summary) => summary.clone(),
            Self::Running(owner) => format!("on {}", owner.describe()),
            Self::Queued(q) => format!("Slurm job {} {} {}", q.id, q.state, q.node),
            Self::Failed { log, last } => format!("log {}: {last}", log.display()),
            Self::Missing => "not started (not in a live Slurm job either)".into(),
            Self::Unavailable(why) => why.clone(),
        }
    }
}

/// The newest log of a run's folder: a Slurm task's (`slurm-*.log`) or a
/// worker's (`worker.log`).
fn newest_log(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

/// The tasks of the last submission still in the queue, when there is one
/// and Slurm can be asked; a line saying why not otherwise.
fn queue(dir: &Path) -> Result<(Option<Jobs>, Vec<Queued>, Option<String>)> {
    let Some(jobs) = Jobs::read(dir)? else { return Ok((None, Vec::new(), None)) };
    if !slurm::has_client() {
        return Ok((Some(jobs), Vec::new(), Some("Slurm's queue not asked: no Slurm client (squeue) here".into())));
    }
    match slurm::queued(&jobs.all()) {
        Ok(queued) => Ok((Some(jobs), queued, None)),
        Err(e) => Ok((Some(jobs), Vec::new(), Some(format!("Slurm's queue not asked: {e:#}")))),
    }
}

/// The report `--status` prints for the grid whose tables go to `out`.
pub(crate) fn status(grid: &Grid, planned: &[Planned], runs: &Runs, out: &Path) -> Result<String> {
    let (jobs, queued, unasked) = queue(&slurm_dir(out))?;
    let mut rows = Vec::with_capacity(planned.len());
    for p in planned {
        let state = match &p.run {
            Err(why) => State::Unavailable(why.clone()),
            Ok(run) => {
                let owner = run_lock::owner(&runs.lock(run))?;
                let task =
                    jobs.as_ref().and_then(|j| queued.iter().find(|q| q.live() && j.run_of_task(&q.id) == Some(run.identity.as_str())));
                if let Some(metrics) = runs.finished(run)? {
                    State::Done(summary(&metrics))
                } else if let Some(owner) = owner.filter(Owner::alive) {
                    State::Running(owner)
                } else if let Some(task) = task {
                    State::Queued(task.clone())
                } else if let Some(log) = newest_log(&runs.of(run)) {
                    let last = last_line(&log);
                    State::Failed { log, last }
                } else {
                    State::Missing
                }
            }
        };
        let identity = p.run.as_ref().map(|r| r.identity.clone()).unwrap_or_else(|_| "-".into());
        rows.push((run_label(grid, p), identity, state));
    }
    let mut text = format!("{} ({}, profile {}): {} runs:", grid.name, grid.experiment.reproduces, grid.profile_name, rows.len());
    let words = ["done", "running", "queued", "failed", "missing", "cannot run here"];
    let counts: Vec<String> = words
        .iter()
        .map(|w| (w, rows.iter().filter(|r| r.2.word() == *w).count()))
        .filter(|(_, n)| *n > 0)
        .map(|(w, n)| format!("{n} {w}"))
        .collect();
    let _ = writeln!(text, " {}", counts.join(", "));
    for word in words {
        for (label, identity, state) in rows.iter().filter(|r| r.2.word() == word) {
            let _ = writeln!(text, "  {word:<8} {label} (run {identity}): {}", state.detail());
        }
    }
    text.push_str(&stages(planned)?);
    if let Some(jobs) = &jobs {
        let live: Vec<String> = queued.iter().filter(|q| q.live()).map(|q| format!("{} {}", q.id, q.state)).collect();
        let render = jobs.render_job.as_deref().unwrap_or("-");
        let now =
            if live.is_empty() { "none of its jobs is in the queue now".to_string() } else { format!("in the queue: {}", live.join(", ")) };
        let _ = writeln!(text, "Last Slurm submission: jobs {} (render job {render}); {now}", jobs.all().join(", "));
    }
    if let Some(line) = unasked {
        let _ = writeln!(text, "{line}");
    }
    Ok(text)
}

/// One line per further pre-training stage the runs start from.
fn stages(planned: &[Planned]) -> Result<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut text = String::new();
    for run in planned.iter().filter_map(|p| p.run.as_ref().ok()) {
        let Some(pretrain) = PreparedPretrain::for_run(&run.config, run.backend)? else { continue };
        if seen.contains(&pretrain.identity) {
            continue;
        }
        let stage = pretrain.stage();
        let state = if pretrain.finished_stage()?.is_some() {
            "done".to_string()
        } else {
            match run_lock::owner(&stage.lock_path())?.filter(Owner::alive) {
                Some(owner) => format!("running on {}", owner.describe()),
                None => "not trained yet".to_string(),
            }
        };
        let _ = writeln!(text, "  pre-training stage {} ({}): {state}", pretrain.identity, stage.dir.display());
        seen.push(pretrain.identity);
    }
    Ok(text)
}
