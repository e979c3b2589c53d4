//! `reproduce --slurm` against a real one-node Slurm started on this machine
//! (Debian's slurmctld, slurmd, slurm-client and munge; installed here when
//! they are missing and this user is root with apt). Where Slurm cannot be
//! had, the cluster test prints "skipped: no Slurm (why)" (the justfile runs
//! this file with its output shown) and fails under `CI`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{tiny_model, toy_dataset};

/// A toy experiment on the tiny model with a further pre-training row: two
/// cells, the second starting from an MLM stage trained on the task's text.
fn toy_experiment(dir: &Path, dataset: &Path) -> PathBuf {
    let experiments = dir.join("experiments");
    std::fs::create_dir_all(&experiments).unwrap();
    let text = format!(
        r#"reproduces = "Table 0"
title = "A toy grid with further pre-training"
description = "Fine-tuning from the model, and after a short MLM stage."

[run]
model = "{model}"

[run.data]
dataset = "{dataset}"
max_len = 16

[run.training]
epochs = 4
batch_size = 8
lr = 1e-3
checkpoint_every = 2

[rows]
name = "start"

[[rows.values]]
label = "model"

[[rows.values]]
label = "after MLM"
set = {{ pretrain = {{ corpus = {{ kind = "within_task" }}, training = {{ steps = 8, warmup_steps = 1, batch_size = 4, max_len = 16, lr = 1e-3, checkpoint_every = 4, heldout_share = 0.1 }} }} }}

[columns]
name = "dataset"

[[columns.values]]
label = "toy"

[profiles.quick]
description = "The tiny model on the toy dataset."
"#,
        model = dir.display(),
        dataset = dataset.display()
    );
    std::fs::write(experiments.join("toy.toml"), text).unwrap();
    experiments
}

/// `bertfit reproduce toy ARGS` with the toy's experiments, `results` and `cache`.
fn reproduce(dir: &Path, results: &str, cache: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bertfit"));
    command.current_dir(dir).args(["reproduce", "toy", "--experiments", "experiments", "--results", results, "--seeds", "2"]);
    command.args(args).env("BERTFIT_CACHE", dir.join(cache));
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {stderr}\n{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned() + &stderr
}

/// A grid ready to submit, with its reference made without Slurm.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    toy_experiment(dir.path(), &toy_dataset(dir.path()));
    dir
}

#[test]
fn slurm_needs_its_client_and_a_dry_run_prints_the_scripts() {
    let dir = setup();
    // A PATH with no Slurm client on it.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let path = empty.display().to_string();
    let out = reproduce(dir.path(), "res", "cache", &["--slurm", "--quiet"], &[("PATH", &path)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--slurm needs the Slurm client (sbatch)"), "{stderr}");

    let args = ["--slurm", "--dry-run", "--gpus-per-run", "1", "--cpus-per-run", "4", "--time", "1:00:00", "--array-max", "3"];
    let args = [&args[..], &["--partition", "gpu", "--account", "lab", "--sbatch-arg=--mem=8G", "--set", "training.lr=2e-3"]].concat();
    let text = ok(&reproduce(dir.path(), "res", "cache", &args, &[("PATH", &path)]));
    for needle in [
        "#SBATCH --array=0-3%3",
        "#SBATCH --array=0%3",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --time=1:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --mem=8G",
        "--pretrain-stage \"${STAGES[$SLURM_ARRAY_TASK_ID]}\"",
        "--run \"$RUN\"",
        "--set training.lr=2e-3",
        "--render",
        "runs=$(sbatch --parsable --array=0-1%3 runs.sbatch)",
        "after_stages=$(sbatch --parsable --array=2-3%3 --dependency=afterok:$stages --kill-on-invalid-dep=yes runs.sbatch)",
        "render=$(sbatch --parsable --dependency=afterok:$runs:$after_stages --kill-on-invalid-dep=yes render.sbatch)",
        "# 0: model / toy seed 0",
        "nothing written, nothing submitted",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    assert!(!dir.path().join("res").exists(), "a dry run writes nothing");
}

/// A one-node Slurm under a temporary folder, its daemons stopped by pid when dropped.
struct Cluster {
    dir: tempfile::TempDir,
}

/// Why Slurm cannot be had here, or `None` when its programs are on PATH
/// (installed now when this user is root with apt).
fn slurm_missing() -> Option<String> {
    let have = || ["sbatch", "slurmctld", "slurmd", "munged", "mungekey"].iter().all(|p| which(p).is_some());
    if have() {
        return None;
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root || which("apt-get").is_none() {
        return Some("its programs are not installed and this user cannot install them (not root with apt)".into());
    }
    let install = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge";
    let out = Command::new("sh").args(["-c", install]).output();
    if have() { None } else { Some(format!("apt-get could not install it: {out:?}")) }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")]).map(|d| d.join(program)).find(|p| p.is_file())
}

fn text_of(command: &mut Command) -> String {
    let out = command.output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Cluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["state", "spool", "log", "munge"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        for p in [d, &d.join("munge")] {
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let key = d.join("munge/munge.key");
        let status = Command::new(which("mungekey").unwrap()).args(["-c", "-f", "-k"]).arg(&key).status().unwrap();
        assert!(status.success(), "mungekey failed");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let munge = |name: &str| d.join("munge").join(name);
        let status = Command::new(which("munged").unwrap())
            .arg(format!("--key-file={}", key.display()))
            .arg(format!("--socket={}", munge("munge.sock").display()))
            .arg(format!("--pid-file={}", munge("munged.pid").display()))
            .arg(format!("--log-file={}", munge("munged.log").display()))
            .arg(format!("--seed-file={}", munge("munged.seed").display()))
            .status()
            .unwrap();
        assert!(status.success(), "munged did not start");
        let host = text_of(Command::new("hostname").arg("-s"));
        let user = text_of(Command::new("id").arg("-un"));
        let memory: u64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().unwrap() / 1024))
            .unwrap();
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        // Ports of this process's own, so that two test runs at once do not meet.
        let port = 20000 + (std::process::id() % 20000) * 2;
        let conf = format!(
            "ClusterName=local\nSlurmctldHost={host}(127.0.0.1)\nSlurmUser={user}\nSlurmdUser={user}\nAuthType=auth/munge\nCredType=cred/munge\n\
             AuthInfo=socket={sock}\nMpiDefault=none\nMailProg=/bin/true\nProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nSchedulerType=sched/backfill\n\
             SchedulerParameters=kill_invalid_depend,sched_interval=1,bf_interval=1,batch_sched_delay=0\n\
             JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\nJobCompType=jobcomp/none\nReturnToService=2\n\
             StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\nSlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\nSlurmctldPort={port}\nSlurmdPort={}\n\
             NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={} State=UNKNOWN\n\
             PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
            port + 1,
            memory.saturating_sub(1024),
            sock = munge("munge.sock").display(),
            d = d.display()
        );
        std::fs::write(d.join("slurm.conf"), conf).unwrap();
        let cluster = Self { dir };
        let status = cluster.command("slurmctld").arg("-i").status().unwrap();
        assert!(status.success(), "slurmctld did not start: {}", cluster.logs());
        let status = cluster.command("slurmd").args(["-N", &host]).status().unwrap();
        assert!(status.success(), "slurmd did not start: {}", cluster.logs());
        let start = Instant::now();
        loop {
            let out = cluster.command("sinfo").args(["-h", "-o", "%t"]).output().unwrap();
            if String::from_utf8_lossy(&out.stdout).trim() == "idle" {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "the node never came up idle: {}", cluster.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// A Slurm program run against this cluster.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(which(program).unwrap_or_else(|| PathBuf::from(program)));
        command.env("SLURM_CONF", self.conf());
        command
    }

    fn logs(&self) -> String {
        ["log/slurmctld.log", "log/slurmd.log"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
                format!("{f}: {}", text.lines().rev().take(5).collect::<Vec<_>>().join(" | "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Waits until none of `jobs` is in the queue.
    fn wait(&self, jobs: &[String]) {
        let start = Instant::now();
        loop {
            let out =
                self.command("squeue").args(["--noheader", "--array", "--jobs", &jobs.join(","), "--format", "%i %T"]).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            if text.trim().is_empty() {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(300), "jobs still queued after 5 minutes: {text}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let d = self.dir.path();
        let pids: Vec<String> = ["slurmd.pid", "slurmctld.pid", "munge/munged.pid"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(d.join(f)).ok())
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        for pid in &pids {
            let _ = Command::new("kill").args(["-TERM", pid]).status();
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) && pids.iter().any(|p| Path::new(&format!("/proc/{p}")).exists()) {
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in pids.iter().filter(|p| Path::new(&format!("/proc/{p}")).exists()) {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
}

/// The submission record `--slurm` wrote.
fn jobs(results: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(results.join("toy/slurm/jobs.json")).unwrap()).unwrap()
}

fn job_ids(jobs: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = jobs["run_jobs"].as_array().unwrap().iter().map(|j| j.as_str().unwrap().to_string()).collect();
    ids.extend(["stage_job", "render_job"].iter().filter_map(|k| jobs[k].as_str().map(str::to_string)));
    ids
}

/// Each finished run's folder and the time its metrics.json was written.
fn finished_runs(results: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut runs: Vec<_> = std::fs::read_dir(results.join("toy/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("metrics.json").is_file())
        .map(|p| {
            let modified = std::fs::metadata(p.join("metrics.json")).unwrap().modified().unwrap();
            (p, modified)
        })
        .collect();
    runs.sort();
    runs
}

/// The grid through Slurm: a stage job, two run arrays, the render job; the
/// table equal bit for bit to the one made without Slurm. Then one task
/// cancelled mid-run: the render job is cancelled, `--status` names the run
/// as failed with its log, and the same command again trains only that run.
#[test]
fn a_grid_submitted_to_slurm_gives_the_table_made_without_it() {
    if let Some(why) = slurm_missing() {
        println!("skipped: no Slurm ({why})");
        assert!(std::env::var_os("CI").is_none(), "skipped: no Slurm ({why}), and CI must run this test");
        return;
    }
    let dir = setup();
    let d = dir.path();
    // Long enough runs (40 steps) that a task can be cancelled mid-run.
    let longer = ["--set", "training.epochs=8"];
    let plain = ok(&reproduce(d, "plain", "cache-plain", &longer, &[]));
    assert!(plain.contains("4 runs"), "{plain}");
    let reference = std::fs::read_to_string(d.join("plain/toy/table.csv")).unwrap();

    let cluster = Cluster::start();
    let slurm_env = [("SLURM_CONF", cluster.conf().to_str().unwrap().to_string())];
    let env: Vec<(&str, &str)> = slurm_env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // A refused submission: sbatch's own message.
    let out = reproduce(d, "refused", "cache", &[&longer[..], &["--slurm", "--partition", "nowhere"]].concat(), &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("sbatch refused") && stderr.contains("nowhere"), "{stderr}");

    let submit = [&longer[..], &["--slurm", "--cpus-per-run", "1"]].concat();
    let said = ok(&reproduce(d, "slurm", "cache", &submit, &env));
    assert!(said.contains("submitted to Slurm 1 pre-training stages as job"), "{said}");
    let submitted = jobs(&d.join("slurm"));
    assert_eq!(submitted["runs"].as_array().unwrap().len(), 4, "{submitted}");
    assert_eq!(submitted["run_jobs"].as_array().unwrap().len(), 2, "free runs, then those after the stage: {submitted}");
    cluster.wait(&job_ids(&submitted));
    let table = std::fs::read_to_string(d.join("slurm/toy/table.csv")).unwrap_or_else(|e| {
        let logs: Vec<_> = std::fs::read_dir(d.join("slurm/toy/slurm/logs")).unwrap().map(|e| e.unwrap().path()).collect();
        panic!("no table ({e}); logs {logs:?}; {}", cluster.logs())
    });
    assert_eq!(table, reference, "the table through Slurm differs from the one without it");
    let status = ok(&reproduce(d, "slurm", "cache", &[&longer[..], &["--status"]].concat(), &env));
    assert!(status.contains("4 runs: 4 done"), "{status}");

    // One task cancelled mid-run (one task at a time, so the others wait or are done).
    let cancel = [&submit[..], &["--array-max", "1", "--set", "training.lr=2e-3"]].concat();
    let said = ok(&reproduce(d, "cancel", "cache", &cancel, &env));
    assert!(!said.contains("pre-training stages as job"), "the stage is in the cache already: {said}");
    let submitted = jobs(&d.join("cancel"));
    let array = submitted["run_jobs"][0].as_str().unwrap().to_string();
    let victim = format!("{array}_1");
    let run = submitted["runs"][1].as_str().unwrap().to_string();
    let run_dir = d.join("cancel/toy/runs").join(&run);
    let start = Instant::now();
    while !run_dir.join("checkpoints").is_dir() {
        assert!(start.elapsed() < Duration::from_secs(300), "task {victim} never started training; {}", cluster.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = cluster.command("scancel").arg(&victim).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    cluster.wait(&job_ids(&submitted));
    assert!(!run_dir.join("metrics.json").exists(), "the run finished before it was cancelled: the test proves nothing");
    assert!(!d.join("cancel/toy/table.csv").exists(), "the render job ran after a failed task");
    let before = finished_runs(&d.join("cancel"));
    assert_eq!(before.len(), 3, "{before:?}");
    let status = ok(&reproduce(d, "cancel", "cache", &[&longer[..], &["--status", "--set", "training.lr=2e-3"]].concat(), &env));
    assert!(status.contains("4 runs: 3 done, 1 failed"), "{status}");
    assert!(
        status.contains(&format!("failed   model / toy seed 1 (run {run}): log cancel/toy/runs/{run}/slurm-{victim}.log: ")),
        "{status}"
    );

    let said = ok(&reproduce(d, "cancel", "cache", &cancel, &env));
    assert!(said.contains("1 runs as array job"), "only the cancelled run is submitted again: {said}");
    cluster.wait(&job_ids(&jobs(&d.join("cancel"))));
    assert_eq!(finished_runs(&d.join("cancel"))[..].iter().filter(|r| before.contains(r)).count(), 3, "a finished run was trained again");
    let plain = ok(&reproduce(d, "plain-cancel", "cache-plain", &[&longer[..], &["--set", "training.lr=2e-3"]].concat(), &[]));
    assert!(plain.contains("4 runs"), "{plain}");
    assert_eq!(
        std::fs::read_to_string(d.join("cancel/toy/table.csv")).unwrap(),
        std::fs::read_to_string(d.join("plain-cancel/toy/table.csv")).unwrap(),
        "the resumed grid's table differs from the one made without Slurm"
    );
}
