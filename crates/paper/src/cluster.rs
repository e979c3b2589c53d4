//! `reproduce NAME --slurm`: the grid's runs still to do handed to Slurm.
//!
//! Written into the experiment's results folder, `slurm/`:
//! - `runs.sbatch`: a job array, one task per run still to do, each
//!   `bertfit reproduce NAME --run ID` into the shared results folder, its
//!   log in the run's folder (`runs/ID/slurm-JOB_TASK.log`);
//! - `stages.sbatch`: when runs start from further pre-training that is not
//!   in the stage cache yet, an array with one task per stage
//!   (`--pretrain-stage ID`); the runs that need a stage are tasks of a
//!   second submission of `runs.sbatch` that waits for it (`afterok`);
//! - `render.sbatch`: after every array task succeeded, the table, claims
//!   and plots from the finished runs (`--render`);
//! - `submit.sh`: the submissions in order with their dependencies, to
//!   submit again by hand; `jobs.json`: the job ids of the last submission,
//!   which `--status` and the next `--slurm` read.
//!
//! Runs claim their lock as everywhere else (a task whose run another worker
//! holds leaves it and succeeds), so a script submitted twice trains nothing
//! twice. A failed task leaves its run unfinished and the render job is
//! cancelled (`--kill-on-invalid-dep=yes`); the same command again submits
//! only the runs still to do.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bertfit_data::assets::cache_dir;
use bertfit_run::{PreparedPretrain, slurm, write_atomic};
use serde::{Deserialize, Serialize};

use crate::grid::Grid;
use crate::options::{ReproduceOptions, SlurmOptions};
use crate::plan::Planned;
use crate::runs::run_label;

/// One task of an array: the identity it trains and a label for people.
#[derive(Debug, Clone, PartialEq)]
struct Task {
    identity: String,
    label: String,
}

/// What one `--slurm` submits.
struct Submission {
    name: String,
    dir: PathBuf,
    /// Pre-training stages not in the cache yet, one task each.
    stages: Vec<Task>,
    /// Runs still to do: first those that need no stage of `stages`
    /// (`free` of them), then those that do.
    runs: Vec<Task>,
    free: usize,
    array_max: Option<u32>,
}

/// The job ids of a submission, `slurm/jobs.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Jobs {
    /// The stages' array job, and the stage each of its tasks trains.
    pub stage_job: Option<String>,
    pub stages: Vec<String>,
    /// The runs' array jobs (the free runs', then those after the stages),
    /// and the run each task index trains (one list for both).
    pub run_jobs: Vec<String>,
    pub runs: Vec<String>,
    pub render_job: Option<String>,
}

impl Jobs {
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join("jobs.json")
    }

    /// The last submission from `dir`, if there was one.
    pub(crate) fn read(dir: &Path) -> Result<Option<Self>> {
        let path = Self::path(dir);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Some(serde_json::from_str(&text).with_context(|| format!("{} is not a bertfit submission record", path.display()))?))
    }

    pub(crate) fn all(&self) -> Vec<String> {
        self.stage_job.iter().chain(&self.run_jobs).chain(&self.render_job).cloned().collect()
    }

    /// The run an array task (`JOB_INDEX`) of this submission trains.
    pub(crate) fn run_of_task(&self, task: &str) -> Option<&str> {
        let (job, index) = task.split_once('_')?;
        let index: usize = index.parse().ok()?;
        self.run_jobs.iter().any(|j| j == job).then(|| self.runs.get(index).map(String::as_str))?
    }
}

/// The folder of an experiment's Slurm scripts and submission record.
pub(crate) fn slurm_dir(out: &Path) -> PathBuf {
    out.join("slurm")
}

/// `--slurm`: submits the runs `todo` (indices into `planned`) and the render
/// job, or prints what it would submit (`--dry-run`).
pub(crate) fn submit(
    grid: &Grid,
    planned: &[Planned],
    todo: &[usize],
    out: &Path,
    options: &ReproduceOptions,
    slurm: &SlurmOptions,
) -> Result<()> {
    let dir = slurm_dir(&std::path::absolute(out)?);
    if !slurm.dry_run {
        if !slurm::has_client() {
            bail!("--slurm needs the Slurm client (sbatch), which is not on PATH here; `--slurm --dry-run` prints the scripts");
        }
        refuse_while_queued(&dir, &grid.name)?;
    }
    let submission = Submission::new(grid, planned, todo, dir, slurm)?;
    let options = absolute(options)?;
    let scripts = [
        ("stages.sbatch", (!submission.stages.is_empty()).then(|| submission.stages_script(&options, slurm))),
        ("runs.sbatch", Some(submission.runs_script(&options, slurm))),
        ("render.sbatch", Some(submission.render_script(&options, slurm))),
        ("submit.sh", Some(submission.submit_script())),
    ];
    if slurm.dry_run {
        for (file, text) in &scripts {
            if let Some(text) = text {
                println!("# ---- {} ----\n{text}", submission.dir.join(file).display());
            }
        }
        eprintln!("--dry-run: nothing written, nothing submitted");
        return Ok(());
    }
    for (file, text) in &scripts {
        let path = submission.dir.join(file);
        match text {
            Some(text) => write_atomic(&path, text)?,
            None if path.exists() => std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?,
            None => {}
        }
    }
    std::fs::create_dir_all(submission.dir.join("logs"))?;
    let jobs = submission.submit()?;
    write_atomic(&Jobs::path(&submission.dir), serde_json::to_string_pretty(&jobs)? + "\n")?;
    print!("{}", submission.follow(&jobs, &options));
    Ok(())
}

/// A new submission while the last one's jobs are still queued would train
/// their runs twice over (the second task finds the lock and leaves, but
/// holds a node meanwhile): refused, naming them.
fn refuse_while_queued(dir: &Path, name: &str) -> Result<()> {
    let Some(last) = Jobs::read(dir)? else { return Ok(()) };
    let live: Vec<String> =
        slurm::queued(&last.all())?.into_iter().filter(slurm::Queued::live).map(|q| format!("{} {}", q.id, q.state)).collect();
    if !live.is_empty() {
        bail!(
            "the last submission of {name} is still in Slurm's queue ({}): follow it with `bertfit reproduce {name} --status`, or scancel it before submitting again",
            live.join(", ")
        );
    }
    Ok(())
}

/// The options with every path absolute, as a job on another node needs them.
fn absolute(options: &ReproduceOptions) -> Result<ReproduceOptions> {
    let mut options = options.clone();
    options.results = std::path::absolute(&options.results)?;
    options.reference = options.reference.as_deref().map(std::path::absolute).transpose()?;
    options.experiments = options.experiments.as_deref().map(std::path::absolute).transpose()?;
    Ok(options)
}

impl Submission {
    fn new(grid: &Grid, planned: &[Planned], todo: &[usize], dir: PathBuf, slurm: &SlurmOptions) -> Result<Self> {
        let mut stages: Vec<Task> = Vec::new();
        let (mut free, mut after) = (Vec::new(), Vec::new());
        for &i in todo {
            let run = planned[i].run.as_ref().expect("only runnable ones are to do");
            let task = Task { identity: run.identity.clone(), label: run_label(grid, &planned[i]) };
            let stage = match PreparedPretrain::for_run(&run.config, run.backend)? {
                Some(pretrain) if pretrain.finished_stage()?.is_none() => pretrain.identity,
                _ => {
                    free.push(task);
                    continue;
                }
            };
            if !stages.iter().any(|s| s.identity == stage) {
                let label = format!("pre-training of {} on {}", task.label, run.config.data.dataset);
                stages.push(Task { identity: stage, label });
            }
            after.push(task);
        }
        let count = free.len();
        free.extend(after);
        Ok(Self { name: grid.name.clone(), dir, stages, runs: free, free: count, array_max: slurm.array_max })
    }

    /// `0-N%K` for tasks `from..to`.
    fn array(&self, from: usize, to: usize) -> String {
        let range = if to - from == 1 { from.to_string() } else { format!("{from}-{}", to - 1) };
        match self.array_max {
            Some(k) => format!("{range}%{k}"),
            None => range,
        }
    }

    /// The `#SBATCH` lines every job shares, then `job` 's own.
    fn header(&self, job: &str, what: &str, slurm: &SlurmOptions, own: &[String]) -> String {
        let mut text = format!(
            "#!/bin/bash\n# {what}\n# Written by `bertfit reproduce {} --slurm` (bertfit {}, commit {}); \
             `bash {}` submits it again with its dependencies.\n",
            self.name,
            env!("CARGO_PKG_VERSION"),
            bertfit_run::commit(),
            self.dir.join("submit.sh").display()
        );
        let mut line = |arg: String| {
            let _ = writeln!(text, "#SBATCH {arg}");
        };
        line(format!("--job-name=bertfit-{}-{job}", self.name));
        line(format!("--chdir={}", std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| ".".into())));
        if let Some(partition) = &slurm.partition {
            line(format!("--partition={partition}"));
        }
        if let Some(account) = &slurm.account {
            line(format!("--account={account}"));
        }
        for arg in own {
            line(arg.clone());
        }
        for arg in &slurm.sbatch_args {
            line(arg.clone());
        }
        text.push_str("set -euo pipefail\n");
        // Every node reads and fills the same caches (stages, tokens, models,
        // data): they must be on storage all nodes share.
        let _ = writeln!(text, "export BERTFIT_CACHE={}", quote(cache_dir_absolute().as_os_str()));
        for var in ["BERTFIT_DATA_ROOT", "BERTFIT_PYTHON"] {
            if let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) {
                let value =
                    if var == "BERTFIT_DATA_ROOT" { std::path::absolute(&value).map(OsString::from).unwrap_or(value) } else { value };
                let _ = writeln!(text, "export {var}={}", quote(&value));
            }
        }
        text
    }

    /// What each task of a runs' or stages' array asks for.
    fn task_resources(&self, slurm: &SlurmOptions, job: &str, count: usize) -> Vec<String> {
        let mut own = vec![
            format!("--array={}", self.array(0, count)),
            format!("--output={}", self.dir.join("logs").join(format!("{job}-%A_%a.out")).display()),
        ];
        if slurm.gpus_per_run > 0 {
            own.push(format!("--gres=gpu:{}", slurm.gpus_per_run));
        }
        if let Some(cpus) = slurm.cpus_per_run {
            own.push(format!("--cpus-per-task={cpus}"));
        }
        if let Some(time) = &slurm.time {
            own.push(format!("--time={time}"));
        }
        own
    }

    fn runs_script(&self, options: &ReproduceOptions, slurm: &SlurmOptions) -> String {
        let what = format!("The runs of `{}` (profile {}) still to do: one array task each.", self.name, options.profile);
        let mut text = self.header("runs", &what, slurm, &self.task_resources(slurm, "runs", self.runs.len()));
        text.push_str(&task_list("RUNS", &self.runs));
        text.push_str("RUN=${RUNS[$SLURM_ARRAY_TASK_ID]}\n");
        let runs = options.results.join(&self.name).join("runs");
        let _ = writeln!(text, "LOG={}/$RUN/slurm-${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}.log", quote(runs.as_os_str()));
        text.push_str("mkdir -p \"$(dirname \"$LOG\")\"\n");
        let _ = writeln!(text, "exec {} >\"$LOG\" 2>&1", bertfit(&self.name, &[&"--run".into(), &"$RUN".into()], options));
        text
    }

    fn stages_script(&self, options: &ReproduceOptions, slurm: &SlurmOptions) -> String {
        let what = format!("The further pre-training stages that runs of `{}` start from: one array task each.", self.name);
        let mut text = self.header("stages", &what, slurm, &self.task_resources(slurm, "stages", self.stages.len()));
        text.push_str(&task_list("STAGES", &self.stages));
        let _ = writeln!(
            text,
            "exec {}",
            bertfit(&self.name, &[&"--pretrain-stage".into(), &"${STAGES[$SLURM_ARRAY_TASK_ID]}".into()], options)
        );
        text
    }

    fn render_script(&self, options: &ReproduceOptions, slurm: &SlurmOptions) -> String {
        let what = format!("The table, claims and plots of `{}` from its finished runs, once every run's task succeeded.", self.name);
        let own = vec!["--cpus-per-task=1".into(), format!("--output={}", self.dir.join("logs").join("render-%j.out").display())];
        let mut text = self.header("render", &what, slurm, &own);
        let mut extra: Vec<OsString> = vec!["--render".into()];
        if let Some(reference) = &options.reference {
            extra.extend(["--reference".into(), reference.clone().into()]);
        }
        let extra: Vec<&OsString> = extra.iter().collect();
        let _ = writeln!(text, "exec {}", bertfit(&self.name, &extra, options));
        text
    }

    /// The submissions, in order.
    fn steps(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        if !self.stages.is_empty() {
            steps.push(Step { name: "stages", array: None, after: vec![], script: "stages.sbatch" });
        }
        if self.free > 0 {
            steps.push(Step { name: "runs", array: Some(self.array(0, self.free)), after: vec![], script: "runs.sbatch" });
        }
        if self.free < self.runs.len() {
            let array = Some(self.array(self.free, self.runs.len()));
            steps.push(Step { name: "after_stages", array, after: vec!["stages"], script: "runs.sbatch" });
        }
        let runs = steps.iter().filter(|s| s.script == "runs.sbatch").map(|s| s.name).collect();
        steps.push(Step { name: "render", array: None, after: runs, script: "render.sbatch" });
        steps
    }

    fn submit_script(&self) -> String {
        let mut text = format!(
            "#!/bin/bash\n# Submits the Slurm jobs of `bertfit reproduce {} --slurm` again, with their dependencies\n\
             # (the command itself does this, and leaves out runs finished since).\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\n",
            self.name
        );
        let steps = self.steps();
        for step in &steps {
            let args = step.args(&|name| format!("${name}"));
            let _ = writeln!(
                text,
                "{0}=$(sbatch --parsable {1}{2}); {0}=${{{0}%%;*}}",
                step.name,
                args.iter().map(|a| format!("{a} ")).collect::<String>(),
                step.script
            );
        }
        let vars: Vec<String> = steps.iter().map(|s| format!("{0}=${0}", s.name)).collect();
        let _ = writeln!(text, "echo \"submitted: {}\"", vars.join(" "));
        text
    }

    /// Submits each step, its dependencies filled in; cancels what it
    /// submitted when a later submission is refused.
    fn submit(&self) -> Result<Jobs> {
        let mut ids: Vec<(&str, String)> = Vec::new();
        let mut jobs = Jobs { stages: ids_of(&self.stages), runs: ids_of(&self.runs), ..Jobs::default() };
        for step in self.steps() {
            let args = step.args(&|name| ids.iter().find(|(n, _)| *n == name).map(|(_, id)| id.clone()).expect("submitted before"));
            let id = match slurm::sbatch(&args, &self.dir.join(step.script)) {
                Ok(id) => id,
                Err(e) => {
                    for (_, id) in &ids {
                        slurm::scancel(id);
                    }
                    let cancelled = if ids.is_empty() { String::new() } else { " (the jobs submitted before it were cancelled)".into() };
                    return Err(e.context(format!("submitting {} to Slurm{cancelled}", self.name)));
                }
            };
            match step.name {
                "stages" => jobs.stage_job = Some(id.clone()),
                "render" => jobs.render_job = Some(id.clone()),
                _ => jobs.run_jobs.push(id.clone()),
            }
            ids.push((step.name, id));
        }
        Ok(jobs)
    }

    /// What was submitted, and how to follow it.
    fn follow(&self, jobs: &Jobs, options: &ReproduceOptions) -> String {
        let mut text = format!("{}: submitted to Slurm", self.name);
        if let Some(job) = &jobs.stage_job {
            let _ = write!(text, " {} pre-training stages as job {job},", self.stages.len());
        }
        let _ = write!(text, " {} runs as array job {}", self.runs.len(), jobs.run_jobs.join(" and "));
        if let Some(job) = &jobs.render_job {
            let _ = write!(text, ", and the table as job {job} once they all succeed");
        }
        let mut status: Vec<String> = vec!["bertfit".into(), "reproduce".into(), self.name.clone(), "--status".into()];
        status.extend(options.grid_args().iter().map(|a| quote(a)));
        let _ = writeln!(
            text,
            ".\nFollow them: squeue --jobs {}   or   {}\nEach run's log: {}/runs/ID/slurm-JOB_TASK.log; the scripts: {}",
            jobs.all().join(","),
            status.join(" "),
            options.results.join(&self.name).display(),
            self.dir.display()
        );
        text
    }
}

/// One `sbatch` of a submission.
struct Step {
    name: &'static str,
    /// The array tasks it takes of its script's list, when not all of them.
    array: Option<String>,
    /// The steps whose every task must succeed first.
    after: Vec<&'static str>,
    script: &'static str,
}

impl Step {
    /// Its sbatch arguments, `job` naming each step it waits for.
    fn args(&self, job: &dyn Fn(&str) -> String) -> Vec<String> {
        let mut args: Vec<String> = self.array.iter().map(|a| format!("--array={a}")).collect();
        if !self.after.is_empty() {
            let on: Vec<String> = self.after.iter().map(|s| job(s)).collect();
            args.extend([format!("--dependency=afterok:{}", on.join(":")), "--kill-on-invalid-dep=yes".into()]);
        }
        args
    }
}

fn ids_of(tasks: &[Task]) -> Vec<String> {
    tasks.iter().map(|t| t.identity.clone()).collect()
}

/// A bash array of the tasks' identities, each with its label as a comment.
fn task_list(var: &str, tasks: &[Task]) -> String {
    let mut text = format!("{var}=(\n");
    for (i, task) in tasks.iter().enumerate() {
        let _ = writeln!(text, "  {}  # {i}: {}", task.identity, task.label.replace('\n', " "));
    }
    text.push_str(")\n");
    text
}

/// `bertfit reproduce NAME EXTRA... GRID ARGS...`, quoted for bash; an
/// argument starting with `$` is left to bash to expand (in double quotes).
fn bertfit(name: &str, extra: &[&OsString], options: &ReproduceOptions) -> String {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("bertfit"));
    let mut words = vec![quote(exe.as_os_str()), "reproduce".into(), quote(name.as_ref())];
    for arg in extra.iter().copied().chain(&options.grid_args()) {
        let text = arg.to_string_lossy();
        words.push(if text.starts_with('$') { format!("\"{text}\"") } else { quote(arg) });
    }
    words.join(" ")
}

/// The cache folder as an absolute path.
fn cache_dir_absolute() -> PathBuf {
    let dir = cache_dir();
    std::path::absolute(&dir).unwrap_or(dir)
}

/// `word` as bash reads it back: bare when it is plain, else in single quotes.
pub(crate) fn quote(word: &std::ffi::OsStr) -> String {
    let text = word.to_string_lossy();
    let plain = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:=,+@%".contains(c));
    if plain { text.into_owned() } else { format!("'{}'", text.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_plain_words_and_protects_the_rest() {
        assert_eq!(quote("training.lr=3e-5".as_ref()), "training.lr=3e-5");
        assert_eq!(quote("data.truncation={kind=\"head_only\"}".as_ref()), "'data.truncation={kind=\"head_only\"}'");
        assert_eq!(quote("it's".as_ref()), r"'it'\''s'");
        assert_eq!(quote("".as_ref()), "''");
    }

    #[test]
    fn a_task_maps_to_its_run() {
        let jobs = Jobs { run_jobs: vec!["55".into(), "57".into()], runs: vec!["a".into(), "b".into(), "c".into()], ..Jobs::default() };
        assert_eq!(jobs.run_of_task("55_0"), Some("a"));
        assert_eq!(jobs.run_of_task("57_2"), Some("c"));
        assert_eq!(jobs.run_of_task("56_1"), None);
        assert_eq!(jobs.run_of_task("55_9"), None);
        assert_eq!(jobs.run_of_task("55"), None);
    }
}
