//! bertfit-tch's build: the one the workspace's LibTorch crates share (the
//! rpath), and with the `libtorch` feature the LibTorch version compiled
//! against (`BERTFIT_LIBTORCH_VERSION`, from its headers) and the C++ shim in `csrc/` (the
//! optimizer's multi-tensor kernels, which tch does not bind), compiled
//! against the libtorch torch-sys links (`DEP_TCH_LIBTORCH_LIB`) with its C++ ABI.

#[allow(dead_code)]
#[path = "src/libtorch_version.rs"]
mod libtorch_version;
#[path = "../tch_rpath.rs"]
mod shared;

use std::path::PathBuf;
use std::process::Command;

/// `_GLIBCXX_USE_CXX11_ABI` of the libtorch in use, found as torch-sys finds
/// it: PyTorch's own flag under LIBTORCH_USE_PYTORCH, else LIBTORCH_CXX11_ABI
/// (default 1).
fn cxx11_abi() -> String {
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
        let out = Command::new(&python)
            .args(["-c", "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"])
            .output()
            .unwrap_or_else(|e| panic!("running {python} to ask torch for its C++ ABI: {e}"));
        return String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into())
}

fn compile_shim() {
    println!("cargo:rerun-if-changed=csrc/optim.cpp");
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys gives the libtorch lib dir (links = \"tch\")"));
    let include = lib.join("../include");
    let (version, header) = libtorch_version::of_headers(&include)
        .unwrap_or_else(|| panic!("no TORCH_VERSION_MAJOR/MINOR/PATCH in LibTorch's headers under {}", include.display()));
    println!("cargo:rerun-if-changed={}", header.display());
    println!("cargo:rustc-env=BERTFIT_LIBTORCH_VERSION={version}");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", cxx11_abi().as_str())
        // libtorch's headers warn under -Wall; the shim's own code is small.
        .warnings(false)
        .file("csrc/optim.cpp")
        .compile("bertfit_optim");
}

fn main() {
    shared::main();
    if std::env::var_os("CARGO_FEATURE_LIBTORCH").is_some() {
        compile_shim();
    }
}
