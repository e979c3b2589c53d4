//! Build script shared by the crates whose binaries may link LibTorch (burn's
//! `tch` backend, enabled by feature unification in any of them): gives the
//! binaries an rpath to the libtorch they were built against, so they run
//! without LD_LIBRARY_PATH. LIBTORCH (a libtorch dir) or LIBTORCH_USE_PYTORCH
//! (the `torch` of `python3` on PATH) say where it is, as for torch-sys; in a
//! build without either, nothing is added. It watches only those settings, so
//! a change to the source reruns none of these scripts (the commit is stamped
//! by the `bertfit` binary's own build, `crates/cli/build.rs`).

use std::path::PathBuf;
use std::process::Command;

fn libtorch_lib() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(dir).join("lib"));
    }
    let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let out =
        Command::new(python).args(["-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"]).output().ok()?;
    out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

pub fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    if std::env::var_os("LIBTORCH").is_none() && std::env::var_os("LIBTORCH_USE_PYTORCH").is_none() {
        return;
    }
    match libtorch_lib() {
        Some(lib) => println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display()),
        None => println!("cargo:warning=libtorch not found; binaries with the tch backend will need LD_LIBRARY_PATH"),
    }
}
