//! `reproduce --jobs N [--devices 0,1]`: a grid's runs trained by up to N
//! worker processes at once (N per device), each `bertfit reproduce NAME
//! --run ID` on one run, as a Slurm array task would be. A worker claims its
//! run's lock, trains it into the shared results folder and exits; this
//! process starts workers as slots free up, shows each one's last progress
//! line, and renders nothing itself (the caller does, from the folder).
//!
//! Workers are processes, not threads: a run seeds its backend's global
//! generator, so two runs in one process would draw each other's dropout
//! masks. A worker stops when the process that started it is gone (killed
//! with -9 too), leaving its run to be resumed from its checkpoint.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use bertfit_model::Backend;
use bertfit_run::summary;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::grid::Grid;
use crate::options::ReproduceOptions;
use crate::plan::Planned;
use crate::runs::{Outcome, Runs, run_label};

/// The environment variable that tells a worker the pid of the process that
/// started it; the worker stops when that process is gone.
pub const PARENT_ENV: &str = "BERTFIT_PARENT_PID";

/// Where each worker runs: `jobs` slots per device, or `jobs` slots on the
/// options' backend when no devices are given.
fn slots(options: &ReproduceOptions) -> Vec<Option<Backend>> {
    if options.devices.is_empty() {
        return vec![options.backend; options.jobs.max(1)];
    }
    options.devices.iter().flat_map(|&d| std::iter::repeat_n(Some(Backend::TchCuda(d)), options.jobs.max(1))).collect()
}

/// The command line of a worker on run `identity`, on `backend`.
fn worker_command(name: &str, identity: &str, backend: Option<Backend>, options: &ReproduceOptions) -> Result<Command> {
    let exe = std::env::current_exe().context("cannot find the bertfit binary to start workers")?;
    let mut command = Command::new(exe);
    let grid = ReproduceOptions { backend, ..options.clone() };
    command.args(["reproduce", name, "--run", identity]).args(grid.grid_args());
    command.env(PARENT_ENV, std::process::id().to_string());
    Ok(command)
}

/// A worker that is training.
struct Running {
    child: Child,
    /// Index into the plan.
    index: usize,
    log: PathBuf,
    bar: ProgressBar,
    label: String,
}

/// The last non-empty line of a log (a progress bar's carriage returns split lines too).
pub fn last_line(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let tail = &text[text.len().saturating_sub(4096)..];
    String::from_utf8_lossy(tail).split(['\n', '\r']).map(str::trim).rfind(|l| !l.is_empty()).unwrap_or_default().to_string()
}

/// Trains the runs `todo` (indices into `planned`) in worker processes.
pub(crate) fn run_in_workers(grid: &Grid, planned: &[Planned], todo: &[usize], runs: &Runs, options: &ReproduceOptions) -> Result<Outcome> {
    let slots = slots(options);
    let multi = if options.quiet { MultiProgress::with_draw_target(ProgressDrawTarget::hidden()) } else { MultiProgress::new() };
    let terminal = !multi.is_hidden();
    let say = |line: String| {
        if options.quiet {
            return;
        }
        if terminal {
            let _ = multi.println(line);
        } else {
            eprintln!("{line}");
        }
    };
    let overall = multi.add(ProgressBar::new(todo.len() as u64));
    overall.set_style(
        ProgressStyle::with_template("{prefix} {bar:28} {pos}/{len} runs [{elapsed_precise} < {eta_precise}]")
            .expect("valid template")
            .progress_chars("=> "),
    );
    overall.set_prefix(format!("{} ({}), {} workers", grid.name, grid.profile_name, slots.len()));
    let mut queue: VecDeque<usize> = todo.iter().copied().collect();
    let mut running: Vec<Option<Running>> = slots.iter().map(|_| None).collect();
    let mut outcome = Outcome::default();
    loop {
        for (s, slot) in running.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let Some(index) = queue.pop_front() else { break };
            let run = planned[index].run.as_ref().expect("only runnable ones are to do");
            let label = run_label(grid, &planned[index]);
            let log = runs.log(run);
            std::fs::create_dir_all(runs.of(run)).with_context(|| format!("cannot create {}", runs.of(run).display()))?;
            let file = std::fs::File::create(&log).with_context(|| format!("cannot write {}", log.display()))?;
            let child = worker_command(&grid.name, &run.identity, slots[s], options)?
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file)
                .spawn()
                .context("cannot start a worker")?;
            let where_ = slots[s].map(|b| format!(" on {b}")).unwrap_or_default();
            say(format!("{label}: started in worker {}{where_} (log: {})", s + 1, log.display()));
            let bar = multi.insert_before(&overall, ProgressBar::new_spinner());
            bar.set_style(ProgressStyle::with_template("  {prefix} {msg}").expect("valid template"));
            bar.set_prefix(format!("[{}] {label}:", s + 1));
            *slot = Some(Running { child, index, log, bar, label });
        }
        if running.iter().all(Option::is_none) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        for slot in running.iter_mut() {
            let Some(worker) = slot.as_mut() else { continue };
            let Some(status) = worker.child.try_wait()? else {
                worker.bar.set_message(last_line(&worker.log));
                continue;
            };
            let worker = slot.take().expect("just seen");
            worker.bar.finish_and_clear();
            multi.remove(&worker.bar);
            overall.inc(1);
            let run = planned[worker.index].run.as_ref().expect("runnable");
            let left = status.code() == Some(LEFT_TO_ANOTHER);
            match runs.finished(run)? {
                Some(_) if left => say(format!("{}: {}", worker.label, last_line(&worker.log))),
                Some(metrics) => {
                    outcome.trained += 1;
                    say(format!("{}: {}", worker.label, summary(&metrics)));
                }
                None if left || runs.held_elsewhere(run)?.is_some() => {
                    outcome.elsewhere += 1;
                    say(format!("{}: {}", worker.label, last_line(&worker.log)));
                }
                None if status.success() => {
                    outcome.stopped = true;
                    say(format!("{}: stopped as BERTFIT_STOP_AFTER_STEPS asked; rerun to resume", worker.label));
                }
                None => {
                    let why = format!("{} (worker exited with {status}; log: {})", last_line(&worker.log), worker.log.display());
                    say(format!("{}: failed: {why}", worker.label));
                    outcome.failures.insert(worker.index, why);
                }
            }
        }
    }
    overall.finish_and_clear();
    Ok(outcome)
}

/// A worker's exit status when it found its run finished or held by another
/// worker and trained nothing.
const LEFT_TO_ANOTHER: i32 = 3;

/// In a worker of `--jobs` (not a plain `--run`, whose callers, such as a
/// Slurm array, count any exit but 0 as a failure): exits with
/// [`LEFT_TO_ANOTHER`], so that the invocation that started it counts the
/// run as another's.
pub fn left_to_another() {
    if std::env::var_os(PARENT_ENV).is_some() {
        std::process::exit(LEFT_TO_ANOTHER);
    }
}

/// In a worker: stops this process when the one that started it is gone.
pub fn watch_parent() {
    let Some(parent) = std::env::var(PARENT_ENV).ok().and_then(|p| p.parse::<u32>().ok()) else { return };
    std::thread::spawn(move || {
        loop {
            if std::os::unix::process::parent_id() != parent {
                eprintln!("the bertfit that started this worker (pid {parent}) is gone; stopping (the run resumes from its checkpoint)");
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_line_skips_blank_lines_and_bar_redraws() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("worker.log");
        std::fs::write(&log, "first\nepoch 1/2 10/40 loss 0.6\repoch 1/2 20/40 loss 0.5\n\n").unwrap();
        assert_eq!(last_line(&log), "epoch 1/2 20/40 loss 0.5");
        assert_eq!(last_line(&dir.path().join("none.log")), "");
    }

    #[test]
    fn slots_are_jobs_per_device() {
        let options = |jobs, devices: Vec<usize>| ReproduceOptions { jobs, devices, ..ReproduceOptions::default() };
        assert_eq!(slots(&options(3, vec![])), vec![None; 3]);
        let spread = slots(&options(2, vec![0, 1]));
        assert_eq!(
            spread,
            vec![Some(Backend::TchCuda(0)), Some(Backend::TchCuda(0)), Some(Backend::TchCuda(1)), Some(Backend::TchCuda(1))]
        );
    }
}
