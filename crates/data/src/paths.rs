//! Where the project's files live outside the checkout, and how results name
//! them: the data root for local copies of datasets (`$BERTFIT_DATA_ROOT`;
//! the cache, `$BERTFIT_CACHE`, is [`crate::assets::cache_dir`]), and a path
//! as results record it, naming no machine's folders.

use std::path::{Path, PathBuf};

use crate::assets::cache_dir;

/// The data root for local copies: `$BERTFIT_DATA_ROOT`, else `datasets/local`.
pub fn data_root() -> PathBuf {
    std::env::var_os("BERTFIT_DATA_ROOT").filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("datasets/local"))
}

/// `path` as results record it, naming no machine's folders: under the cache
/// `$BERTFIT_CACHE/...`, under the data root `$BERTFIT_DATA_ROOT/...`, under
/// the working directory relative to it; any other path as given.
pub fn portable_path(path: &Path) -> PathBuf {
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let full = canonical(path);
    for (name, root) in [("$BERTFIT_CACHE", cache_dir()), ("$BERTFIT_DATA_ROOT", data_root())] {
        if let Ok(rest) = full.strip_prefix(canonical(&root)) {
            return Path::new(name).join(rest);
        }
    }
    match std::env::current_dir().ok().and_then(|cwd| full.strip_prefix(canonical(&cwd)).ok().map(Path::to_path_buf)) {
        Some(rest) => rest,
        None => path.to_path_buf(),
    }
}
