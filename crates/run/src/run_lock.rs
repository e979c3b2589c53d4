//! A job claimed by one worker at a time: a run of a grid, or a cached stage.
//!
//! Several workers may share one results folder: `reproduce --jobs N` on one
//! machine, two `reproduce` typed at once, Slurm array tasks on many nodes.
//! The folder is their only coordination. A worker claims a job by creating
//! its lock file, which names the owner (host, pid and the process's start
//! time, the Slurm job, when); the file is made whole under another name and
//! hard-linked into place, which succeeds for exactly one worker even on a
//! shared (NFS) file system, and no one ever reads half a lock. The owner
//! removes it when the job ends. A lock whose owner is gone (its process no
//! longer runs on the same host, or its Slurm job no longer runs) is taken
//! over: moved aside under a name of the taker's own, checked to be the stale
//! one (and put back if another worker's fresh lock was moved instead), then
//! claimed as usual.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    /// The process's start time in clock ticks since boot (`/proc/PID/stat`),
    /// so that a later process given the same pid is not taken for the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
    /// `SLURM_JOB_ID`, and `SLURM_ARRAY_JOB_ID_SLURM_ARRAY_TASK_ID` for an array task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<String>,
    /// Seconds since the Unix epoch when the lock was taken.
    pub since: u64,
}

impl Owner {
    /// This process.
    pub fn me() -> Self {
        let pid = std::process::id();
        let since = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Self { host: hostname(), pid, start_ticks: start_ticks(pid), slurm_job: slurm_job(), since }
    }

    /// Whether the owner may still be working: its process runs on this host
    /// (the same pid, started at the same time), or its Slurm job still runs.
    /// An owner on another host outside Slurm cannot be asked, and counts as alive.
    pub fn alive(&self) -> bool {
        if self.host == hostname() {
            return match (start_ticks(self.pid), self.start_ticks) {
                (None, _) => false,
                (Some(now), Some(then)) => now == then,
                (Some(_), None) => true,
            };
        }
        match &self.slurm_job {
            Some(job) => crate::slurm::job_running(job).unwrap_or(true),
            None => true,
        }
    }

    /// `host pid 1234 (Slurm job 55_3) since 12:00:05 UTC`, for messages.
    pub fn describe(&self) -> String {
        let job = self.slurm_job.as_ref().map(|j| format!(", Slurm job {j}")).unwrap_or_default();
        let (h, m, s) = ((self.since / 3600) % 24, (self.since / 60) % 60, self.since % 60);
        format!("{} pid {}{job}, since {h:02}:{m:02}:{s:02} UTC", self.host, self.pid)
    }
}

/// This machine's name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// When process `pid` started (field 22 of `/proc/PID/stat`), `None` when no such process runs.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The Slurm job this process runs in, if any.
fn slurm_job() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
        (Some(array), Some(task)) => Some(format!("{array}_{task}")),
        _ => var("SLURM_JOB_ID"),
    }
}

/// A claimed job; the lock is removed when this is dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    text: String,
}

impl Lock {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the lock file still names this owner (another worker could
    /// have taken it over had this one been stalled past its checks).
    pub fn still_held(&self) -> bool {
        std::fs::read_to_string(&self.path).is_ok_and(|t| t == self.text)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.still_held() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The outcome of [`claim`].
#[derive(Debug)]
pub enum Claim {
    /// The job is this worker's until the lock is dropped.
    Claimed(Lock),
    /// Another worker, alive, holds it.
    Held(Owner),
}

/// Claims the job whose lock file is `path` (its folder is created if needed).
pub fn claim(path: &Path) -> Result<Claim> {
    let me = Owner::me();
    claim_as(path, &me, &|owner| owner.alive())
}

/// [`claim`] as `me`, with `alive` judging other owners (tests stand in for dead ones).
pub fn claim_as(path: &Path, me: &Owner, alive: &dyn Fn(&Owner) -> bool) -> Result<Claim> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let text = serde_json::to_string(me)? + "\n";
    let unique = format!("{}-{}-{}", me.host, me.pid, nonce());
    let fresh = sibling(path, &format!("new-{unique}"));
    std::fs::write(&fresh, &text).with_context(|| format!("cannot write {}", fresh.display()))?;
    let outcome = (|| {
        for _ in 0..5 {
            match std::fs::hard_link(&fresh, path) {
                Ok(()) => return Ok(Claim::Claimed(Lock { path: path.to_path_buf(), text: text.clone() })),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("cannot create the lock {}", path.display())),
            }
            let Some((held, owner)) = read_lock(path)? else { continue };
            if alive(&owner) {
                return Ok(Claim::Held(owner));
            }
            // Stale: move it aside under our own name, and make sure it was the stale one.
            let aside = sibling(path, &format!("stale-{unique}"));
            if std::fs::rename(path, &aside).is_err() {
                continue; // released or taken over by another worker meanwhile
            }
            let moved = std::fs::read_to_string(&aside).unwrap_or_default();
            if moved != held {
                // A fresh lock of another worker was moved: put it back.
                let restored = std::fs::hard_link(&aside, path).is_ok();
                let _ = std::fs::remove_file(&aside);
                if restored && let Ok(owner) = serde_json::from_str::<Owner>(&moved) {
                    return Ok(Claim::Held(owner));
                }
                continue;
            }
            let _ = std::fs::remove_file(&aside);
        }
        anyhow::bail!("cannot claim {}: other workers keep taking and releasing it", path.display())
    })();
    let _ = std::fs::remove_file(&fresh);
    outcome
}

/// The lock file's text and owner; `None` when it vanished meanwhile. A lock
/// that is not an owner's JSON (written by something else) is an error naming it.
fn read_lock(path: &Path) -> Result<Option<(String, Owner)>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let owner = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a bertfit lock (remove it if no bertfit is running on it)", path.display()))?;
            Ok(Some((text, owner)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The owner named by the lock file `path`, if there is one.
pub fn owner(path: &Path) -> Result<Option<Owner>> {
    Ok(read_lock(path)?.map(|(_, owner)| owner))
}

/// `path` with `.SUFFIX` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}

/// A number that differs between calls of one process and between processes.
fn nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos() as u64).unwrap_or(0);
    (nanos << 16) ^ COUNTER.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(pid: u32) -> Owner {
        Owner { host: "node-a".into(), pid, start_ticks: Some(7), slurm_job: None, since: 1_700_000_000 }
    }

    #[test]
    fn one_claim_wins_the_others_see_its_owner_and_drop_releases_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs/abc/.lock");
        let Claim::Claimed(lock) = claim_as(&path, &owner(1), &|_| true).unwrap() else { panic!("free lock not claimed") };
        match claim_as(&path, &owner(2), &|_| true).unwrap() {
            Claim::Held(o) => assert_eq!(o, owner(1)),
            Claim::Claimed(_) => panic!("claimed twice"),
        }
        assert!(lock.still_held());
        drop(lock);
        assert!(!path.exists());
        let again = claim_as(&path, &owner(2), &|_| true).unwrap();
        assert!(matches!(again, Claim::Claimed(_)));
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(".lock")], "no temporary files left behind");
    }

    #[test]
    fn a_dead_owners_lock_is_taken_over_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let Claim::Claimed(dead) = claim_as(&path, &owner(1), &|_| true).unwrap() else { panic!() };
        std::mem::forget(dead); // killed: the lock stays
        let judge = |o: &Owner| o.pid != 1;
        let Claim::Claimed(taken) = claim_as(&path, &owner(2), &judge).unwrap() else { panic!("stale lock not taken over") };
        assert_eq!(super::owner(&path).unwrap(), Some(owner(2)));
        // The new owner is alive: a third worker sees it, and does not take it.
        assert!(matches!(claim_as(&path, &owner(3), &judge).unwrap(), Claim::Held(o) if o.pid == 2));
        assert!(taken.still_held());
    }

    #[test]
    fn many_threads_racing_for_one_lock_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        // A stale lock first, so that every thread also races to take it over.
        std::mem::forget(claim_as(&path, &owner(0), &|_| true).unwrap());
        let judge = |o: &Owner| o.pid != 0;
        let (path, judge) = (&path, &judge);
        let locks: Vec<Claim> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..=8).map(|pid| s.spawn(move || claim_as(path, &owner(pid), judge).unwrap())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won: Vec<&Lock> = locks.iter().filter_map(|c| if let Claim::Claimed(l) = c { Some(l) } else { None }).collect();
        assert_eq!(won.len(), 1, "{locks:?}");
        assert!(won[0].still_held());
    }

    #[test]
    fn this_process_is_alive_and_a_gone_pid_is_not() {
        let me = Owner::me();
        assert!(me.alive());
        assert!(me.start_ticks.is_some());
        let reused = Owner { start_ticks: me.start_ticks.map(|t| t + 1), ..me.clone() };
        assert!(!reused.alive(), "the same pid started at another time is another process");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!Owner { pid, start_ticks: Some(1), ..me.clone() }.alive());
        let elsewhere = Owner { host: "another-host".into(), ..me };
        assert!(elsewhere.alive(), "a process on another host outside Slurm cannot be asked");
    }

    #[test]
    fn a_file_that_is_not_a_lock_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        std::fs::write(&path, "hello").unwrap();
        let err = format!("{:#}", claim_as(&path, &owner(1), &|_| true).unwrap_err());
        assert!(err.contains(".lock is not a bertfit lock"), "{err}");
    }
}
