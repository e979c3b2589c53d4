//! Which LibTorch this binary was built against, and which one it runs with.
//!
//! A binary runs only on the LibTorch it was compiled for: one built against
//! 2.9 and loaded with 2.11's libraries binds every symbol, starts, and then
//! fails at the first tensor ("Cannot access data pointer of Tensor that
//! doesn't have storage"). [`check`] compares the version compiled in (read
//! from the headers by the build script) with the version of the
//! `libtorch_cpu.so` the process has loaded, before any tensor is made.

use std::path::{Path, PathBuf};

/// The LibTorch version this binary was compiled against (`2.9.0`), `None`
/// in a build without the `libtorch` feature.
pub fn built() -> Option<&'static str> {
    option_env!("BERTFIT_LIBTORCH_VERSION")
}

/// `MAJOR.MINOR.PATCH` from a LibTorch `torch/version.h`
/// (`#define TORCH_VERSION_MAJOR 2` and so on).
pub fn from_header(text: &str) -> Option<String> {
    let part = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.trim().strip_prefix("#define")?.trim_start();
            let value = rest.strip_prefix(name)?;
            value.starts_with(char::is_whitespace).then(|| value.trim().parse::<u32>().ok()).flatten()
        })
    };
    Some(format!("{}.{}.{}", part("TORCH_VERSION_MAJOR")?, part("TORCH_VERSION_MINOR")?, part("TORCH_VERSION_PATCH")?))
}

/// Where LibTorch's headers define its version, under its `include` folder:
/// `torch/headeronly/version.h` from 2.10 on (the API's `version.h` only
/// includes it there), the API's `version.h` before.
const VERSION_HEADERS: [&str; 2] = ["torch/headeronly/version.h", "torch/csrc/api/include/torch/version.h"];

/// The version LibTorch's headers under `include` define, and the header that says it.
pub fn of_headers(include: &Path) -> Option<(String, PathBuf)> {
    VERSION_HEADERS.iter().map(|h| include.join(h)).find_map(|path| {
        let version = std::fs::read_to_string(&path).ok().as_deref().and_then(from_header)?;
        Some((version, path))
    })
}

/// The version of the LibTorch whose library folder is `lib` (where
/// `libtorch_cpu.so` lies): its headers' (pip's torch and the libtorch
/// archives both ship them), else pip's `torch/version.py` or the archive's
/// `build-version`, without the local part (`+cu130`).
pub fn of_lib_dir(lib: &Path) -> Option<String> {
    let root = lib.parent()?;
    if let Some((v, _)) = of_headers(&root.join("include")) {
        return Some(v);
    }
    let python = std::fs::read_to_string(root.join("version.py")).ok().and_then(|text| {
        text.lines().find_map(|l| l.strip_prefix("__version__ = ").map(|v| v.trim().trim_matches(['\'', '"']).to_string()))
    });
    let version = python.or_else(|| std::fs::read_to_string(root.join("build-version")).ok().map(|v| v.trim().to_string()))?;
    Some(version.split('+').next().unwrap_or(&version).to_string())
}

/// The folder of the `libtorch_cpu.so` this process has mapped (Linux), if any.
pub fn loaded_lib_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let path = line.split_whitespace().nth(5)?;
        path.ends_with("/libtorch_cpu.so").then(|| Path::new(path).parent().map(Path::to_path_buf)).flatten()
    })
}

/// The one-line refusal when the LibTorch found at run time is not the one
/// the binary was built for; `None` when they agree or either is unknown.
pub fn mismatch(built: Option<&str>, found: Option<(String, PathBuf)>) -> Option<String> {
    let (built, (found, lib)) = (built?, found?);
    (built != found).then(|| {
        format!(
            "this bertfit was built against LibTorch {built}, and found LibTorch {found} in {}: rebuild with BERTFIT_TORCH={found} (or run it with LibTorch {built})",
            lib.display()
        )
    })
}

/// Whether the LibTorch this process loaded is the one it was built for; an
/// error in one line if not. Checked once, before the first tensor.
pub fn check() -> Result<(), String> {
    static CHECKED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let found = loaded_lib_dir().and_then(|lib| of_lib_dir(&lib).map(|v| (v, lib)));
            mismatch(built(), found).map_or(Ok(()), Err)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "#pragma once\n#define TORCH_VERSION_MAJOR 2\n\n/// Indicates the minor version of LibTorch.\n#define TORCH_VERSION_MINOR 11\n#define TORCH_VERSION_PATCH 0\n#define TORCH_VERSION_ABI_TAG 0\n#define TORCH_VERSION \\\n  \"2.11.0\"\n";

    #[test]
    fn reads_the_version_from_headers_pip_and_archive_layouts() {
        assert_eq!(from_header(HEADER).as_deref(), Some("2.11.0"));
        assert_eq!(from_header("#define TORCH_VERSION_MAJOR 2\n"), None);
        let dir = tempfile::tempdir().unwrap();
        // pip: torch/lib, torch/include/..., torch/version.py
        let pip = dir.path().join("pip/torch");
        std::fs::create_dir_all(pip.join("lib")).unwrap();
        std::fs::write(pip.join("version.py"), "__all__ = []\n__version__ = '2.9.0+cu128'\n").unwrap();
        assert_eq!(of_lib_dir(&pip.join("lib")).as_deref(), Some("2.9.0"));
        // 2.9: the API's version.h defines it.
        let headers = pip.join("include/torch/csrc/api/include/torch");
        std::fs::create_dir_all(&headers).unwrap();
        std::fs::write(headers.join("version.h"), HEADER.replace("MINOR 11", "MINOR 9")).unwrap();
        assert_eq!(of_lib_dir(&pip.join("lib")).as_deref(), Some("2.9.0"), "the headers come first");
        // 2.11: the API's version.h includes the header-only one, which defines it.
        std::fs::write(headers.join("version.h"), "#include <torch/headeronly/version.h>\n").unwrap();
        std::fs::create_dir_all(pip.join("include/torch/headeronly")).unwrap();
        std::fs::write(pip.join("include/torch/headeronly/version.h"), HEADER).unwrap();
        assert_eq!(of_lib_dir(&pip.join("lib")).as_deref(), Some("2.11.0"));
        // The libtorch archive without headers: build-version.
        let archive = dir.path().join("libtorch");
        std::fs::create_dir_all(archive.join("lib")).unwrap();
        std::fs::write(archive.join("build-version"), "2.9.0+cpu\n").unwrap();
        assert_eq!(of_lib_dir(&archive.join("lib")).as_deref(), Some("2.9.0"));
        assert_eq!(of_lib_dir(&dir.path().join("nothing/lib")), None);
    }

    #[test]
    fn another_libtorch_is_one_line_naming_both_and_the_fix() {
        let found = |v: &str| Some((v.to_string(), PathBuf::from("/venv/torch/lib")));
        assert_eq!(mismatch(Some("2.9.0"), found("2.9.0")), None);
        assert_eq!(mismatch(None, found("2.11.0")), None, "no LibTorch compiled in: nothing to compare");
        assert_eq!(mismatch(Some("2.9.0"), None), None, "no LibTorch found: nothing to compare");
        let line = mismatch(Some("2.9.0"), found("2.11.0")).unwrap();
        assert_eq!(
            line,
            "this bertfit was built against LibTorch 2.9.0, and found LibTorch 2.11.0 in /venv/torch/lib: rebuild with BERTFIT_TORCH=2.11.0 (or run it with LibTorch 2.9.0)"
        );
    }

    #[test]
    fn this_process_runs_the_libtorch_it_was_built_for() {
        assert_eq!(check(), Ok(()));
        if cfg!(feature = "libtorch") {
            let lib = loaded_lib_dir().expect("a LibTorch build maps libtorch_cpu.so");
            assert_eq!(of_lib_dir(&lib).as_deref(), built(), "{}", lib.display());
        }
    }
}
