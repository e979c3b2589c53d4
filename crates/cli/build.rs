//! The `bertfit` binary's build: the rpath to LibTorch that every LibTorch
//! crate's build gives (`../tch_rpath.rs`), and the commit the binary is built
//! from (`BERTFIT_COMMIT`, `-dirty` when tracked files differ from it), which
//! `--version` shows and every run's metrics record (`bertfit_run::set_commit`).
//! Stamped here alone, so that a change anywhere under `crates/` reruns this
//! script and rebuilds this crate only, not every crate beneath it.

#[path = "../tch_rpath.rs"]
mod rpath;

use std::path::PathBuf;
use std::process::Command;

/// `git rev-parse --short=12 HEAD`, with `-dirty` for uncommitted changes to tracked files.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(hash) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if changes.is_empty() => hash,
            _ => format!("{hash}-dirty"),
        },
        None => "unknown".into(),
    }
}

fn main() {
    rpath::main();
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    for watched in [".git/HEAD", ".git/index", "crates", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rustc-env=BERTFIT_COMMIT={}", commit());
}
