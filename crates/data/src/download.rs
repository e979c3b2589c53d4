//! Files from the web into the cache, as the paper's datasets are published:
//! pinned by the checksums their publishers give (md5 where that is all there
//! is, sha256 beside it where one was recorded), downloaded with a progress bar
//! and resumed after a cut, refused when a checksum differs, and archives
//! (`.tar.gz`, `.tgz`) unpacked once. Afterwards everything works offline.
//!
//! The transfer is `curl` (HTTPS, proxies and `Range` resumption come with it);
//! this module owns the cache layout, the checks and the progress.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use md5::Md5;
use sha2::{Digest, Sha256};

/// A published file: where it is and what it must hash to.
#[derive(Debug, Clone, Copy)]
pub struct Pinned<'a> {
    pub url: &'a str,
    pub sha256: Option<&'a str>,
    pub md5: Option<&'a str>,
    /// Its size, when published: the progress bar's length and a first check.
    pub bytes: Option<u64>,
}

/// How many times a cut transfer is resumed before giving up.
const ATTEMPTS: usize = 4;

impl Pinned<'_> {
    /// The file's name (the URL's last segment).
    pub fn file_name(&self) -> &str {
        self.url.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("download")
    }

    /// The folder under `cache` that holds the download: named by its checksum,
    /// so two URLs of one file share it and a changed pin never reuses a file.
    pub fn folder(&self, cache: &Path) -> Result<PathBuf> {
        let key = match (self.sha256, self.md5) {
            (Some(sha), _) => sha,
            (None, Some(md5)) => md5,
            (None, None) => bail!("{}: a download needs a sha256 or an md5", self.url),
        };
        Ok(cache.join("downloads").join(&key[..16.min(key.len())]))
    }

    /// Whether the file (and for `member`, the unpacked archive) is in the cache
    /// already: nothing to fetch.
    pub fn is_cached(&self, cache: &Path, member: Option<&str>) -> bool {
        let Ok(dir) = self.folder(cache) else { return false };
        let unpacked = dir.join("unpacked");
        self.verified_marker(&dir).is_file() && member.is_none_or(|m| unpacked.join(".complete").is_file() && unpacked.join(m).exists())
    }

    /// The file beside a download that says it passed its checks.
    fn verified_marker(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.verified", self.file_name()))
    }

    /// The downloaded file, fetched first when it is not in the cache; `Err`
    /// inside when it cannot be reached (offline), saying where a copy may go.
    pub fn fetch(&self, cache: &Path) -> Result<std::result::Result<PathBuf, String>> {
        let dir = self.folder(cache)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let _turn = lock(&dir)?;
        let path = dir.join(self.file_name());
        let verified = self.verified_marker(&dir);
        if path.is_file() && verified.is_file() {
            return Ok(Ok(path));
        }
        if path.is_file() {
            // A copy the user put there: checked like a download.
            self.check(&path)?;
            std::fs::write(&verified, self.describe())?;
            return Ok(Ok(path));
        }
        let partial = dir.join(format!("{}.partial", self.file_name()));
        if let Err(why) = self.transfer(&partial)? {
            return Ok(Err(format!("could not download {} ({why}); a copy put at {} is used instead", self.url, path.display())));
        }
        if let Err(e) = self.check(&partial) {
            let _ = std::fs::remove_file(&partial);
            return Err(e.context("the download was removed"));
        }
        std::fs::rename(&partial, &path)?;
        std::fs::write(&verified, self.describe())?;
        Ok(Ok(path))
    }

    /// The archive fetched and unpacked (once); `member` is a path inside it.
    pub fn fetch_member(&self, cache: &Path, member: &str) -> Result<std::result::Result<PathBuf, String>> {
        let archive = match self.fetch(cache)? {
            Ok(archive) => archive,
            Err(why) => return Ok(Err(why)),
        };
        let folder = self.folder(cache)?;
        let dir = folder.join("unpacked");
        if !dir.join(".complete").is_file() {
            let _turn = lock(&folder)?;
            if !dir.join(".complete").is_file() {
                unpack(&archive, &dir)?;
            }
        }
        let path = dir.join(member);
        if !path.exists() {
            bail!("{member} is not in {} (from {})", archive.display(), self.url);
        }
        Ok(Ok(path))
    }

    fn describe(&self) -> String {
        format!("url {}\nsha256 {}\nmd5 {}\n", self.url, self.sha256.unwrap_or("-"), self.md5.unwrap_or("-"))
    }

    /// The size and every checksum given; an error names the file, the URL and both values.
    pub fn check(&self, path: &Path) -> Result<()> {
        let name = self.file_name();
        let size = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
        if let Some(bytes) = self.bytes
            && bytes != size
        {
            bail!("{name} from {}: expected {bytes} bytes, got {size}", self.url);
        }
        let (sha256, md5) = hash_file(path)?;
        for (kind, expected, actual) in [("sha256", self.sha256, sha256), ("md5", self.md5, md5)] {
            if let Some(expected) = expected
                && !expected.eq_ignore_ascii_case(&actual)
            {
                bail!("{kind} mismatch for {name} from {}: expected {expected}, got {actual}", self.url);
            }
        }
        Ok(())
    }

    /// Downloads into `partial`, resuming what is there; `Err` inside when the
    /// server cannot be reached or keeps failing.
    fn transfer(&self, partial: &Path) -> Result<std::result::Result<(), String>> {
        let bar = progress_bar(self.file_name(), self.bytes);
        let mut last_error = String::new();
        for _ in 0..ATTEMPTS {
            let have = file_len(partial);
            if self.bytes.is_some_and(|b| have == b) {
                bar.finish_and_clear();
                return Ok(Ok(()));
            }
            let mut child = Command::new("curl")
                .args(["-fsSL", "--connect-timeout", "20", "-C", "-", "-o"])
                .arg(partial)
                .arg(self.url)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("cannot run curl, which downloads the datasets (install it, or put the files in the cache by hand)")?;
            let status = loop {
                bar.set_position(file_len(partial));
                if let Some(status) = child.try_wait()? {
                    break status;
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            bar.set_position(file_len(partial));
            if status.success() {
                bar.finish_and_clear();
                return Ok(Ok(()));
            }
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            last_error = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("curl failed").trim().to_string();
            // 33: the server cannot resume; start over.
            if status.code() == Some(33) {
                let _ = std::fs::remove_file(partial);
                continue;
            }
            // 6: host not resolved, 7: no connection, 28: timed out: offline; no point retrying.
            if matches!(status.code(), Some(6 | 7 | 28)) || file_len(partial) == have {
                break;
            }
        }
        bar.abandon();
        // A partial file that is already whole (a range past its end is refused):
        // the checks decide.
        if file_len(partial) > 0 && self.check(partial).is_ok() {
            return Ok(Ok(()));
        }
        Ok(Err(last_error))
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn progress_bar(name: &str, bytes: Option<u64>) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(bytes, indicatif::ProgressDrawTarget::stderr());
    let style = indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
        .expect("a valid template");
    bar.set_style(style);
    bar.set_message(format!("downloading {name}"));
    bar
}

/// The file's sha256 and md5, in one read.
pub fn hash_file(path: &Path) -> Result<(String, String)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let (mut sha, mut md5) = (Sha256::new(), Md5::new());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
    }
    Ok((format!("{:x}", sha.finalize()), format!("{:x}", md5.finalize())))
}

/// One process at a time works in `dir` (the others wait their turn).
fn lock(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}

/// Unpacks a `.tar.gz` into `dir` through a temporary sibling, so that no
/// one sees a half-unpacked folder.
fn unpack(archive: &Path, dir: &Path) -> Result<()> {
    let tmp = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let file = std::fs::File::open(archive)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    tar.unpack(&tmp).with_context(|| format!("cannot unpack {} (not a .tar.gz?)", archive.display()))?;
    std::fs::write(tmp.join(".complete"), "")?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir).with_context(|| format!("cannot move the unpacked archive to {}", dir.display()))?;
    Ok(())
}
