//! Readers for the original file formats. Each returns labelled examples in
//! file order; errors name the file and the line or row.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use polars::prelude::{
    BooleanChunked, CsvReadOptions, DataFrame, DataType, JsonFormat, JsonReader, ParquetReader, SerReader, StringChunked,
};

use crate::catalogue::{DatasetSpec, EmptyText, Encoding, Format, LabelKind, TableFile};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Example {
    pub text: String,
    pub label: usize,
    /// Where it was read: what names it in predictions.
    #[serde(default)]
    pub origin: Origin,
}

impl Example {
    /// An example read from nowhere in particular (typed input, tests).
    pub fn new(text: impl Into<String>, label: usize) -> Self {
        Self { text: text.into(), label, origin: Origin::default() }
    }
}

/// Where an example sits in its dataset's files: the split file it was read
/// from and its record's position there, from 0 (empty texts that were
/// skipped count too, so positions are those of the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// Read from the test file (else the train file).
    pub test_file: bool,
    pub record: usize,
}

impl Origin {
    /// A stable id for predictions: `DATASET/train/RECORD` or `DATASET/test/RECORD`.
    pub fn id(&self, dataset: &str) -> String {
        format!("{dataset}/{}/{}", if self.test_file { "test" } else { "train" }, self.record)
    }
}

#[derive(Debug, Default)]
pub struct ReadOutcome {
    pub examples: Vec<Example>,
    /// Texts that were empty after building and were skipped (`empty_text = "skip"`).
    pub skipped_empty: usize,
}

/// Collects examples, applying the empty-text rule.
struct Collector<'a> {
    spec: &'a DatasetSpec,
    file: &'a Path,
    out: ReadOutcome,
    /// Records pushed so far, skipped ones included.
    records: usize,
}

impl<'a> Collector<'a> {
    fn new(spec: &'a DatasetSpec, file: &'a Path) -> Self {
        Self { spec, file, out: ReadOutcome::default(), records: 0 }
    }

    fn push(&mut self, text: String, label: usize, place: &str) -> Result<()> {
        let record = self.records;
        self.records += 1;
        if text.trim().is_empty() {
            match self.spec.empty_text {
                EmptyText::Skip => {
                    self.out.skipped_empty += 1;
                    return Ok(());
                }
                EmptyText::Fail => bail!("{}, {place}: empty text (empty_text = \"fail\")", self.file.display()),
            }
        }
        self.out.examples.push(Example { text, label, origin: Origin { test_file: false, record } });
        Ok(())
    }

    fn class_index(&self, name: &str, place: &str) -> Result<usize> {
        self.spec
            .classes
            .iter()
            .position(|c| c == name)
            .with_context(|| format!("{}, {place}: label {name:?} is not one of the classes {:?}", self.file.display(), self.spec.classes))
    }

    fn numbered(&self, value: &str, base: i64, place: &str) -> Result<usize> {
        let n: i64 =
            value.trim().parse().with_context(|| format!("{}, {place}: label {value:?} is not an integer", self.file.display()))?;
        let index = n - base;
        if index < 0 || index as usize >= self.spec.classes.len() {
            bail!(
                "{}, {place}: label {n} is outside the {} classes (labels start at {base})",
                self.file.display(),
                self.spec.classes.len()
            );
        }
        Ok(index as usize)
    }
}

/// Reads the examples of one split file (or folder) of `spec`.
pub fn read_split(spec: &DatasetSpec, file: &Path) -> Result<ReadOutcome> {
    let mut c = Collector::new(spec, file);
    match &spec.format {
        Format::ZhangCsv { columns, text } => read_zhang_csv(&mut c, columns, text)?,
        Format::TrecLabel => read_trec(&mut c)?,
        Format::AclImdb => read_folders(&mut c, "txt", Encoding::Utf8, &["unsup"])?,
        Format::FolderPerClass { extension, encoding } => read_folders(&mut c, extension, *encoding, &[])?,
        Format::Table { file: kind, text, label, labels, label_base, filter } => {
            let df = read_table(file, *kind)?;
            let df = match filter {
                Some(f) => {
                    let col = string_column(&df, &f.column, file)?;
                    let mask: BooleanChunked = col.iter().map(|v| v == Some(f.equals.as_str())).collect();
                    df.filter(&mask)?
                }
                None => df,
            };
            let texts: Vec<StringChunked> = text.iter().map(|t| string_column(&df, t, file)).collect::<Result<_>>()?;
            let labels_col = string_column(&df, label, file)?;
            for (row, value) in labels_col.iter().enumerate() {
                let place = format!("row {}", row + 1);
                let value = value.with_context(|| format!("{}, {place}: missing label", file.display()))?;
                let index = match labels {
                    LabelKind::Index => c.numbered(value, *label_base, &place)?,
                    LabelKind::Name => c.class_index(value, &place)?,
                };
                let joined = join_fields(texts.iter().map(|t| t.get(row).unwrap_or("")));
                c.push(joined, index, &place)?;
            }
        }
    }
    Ok(c.out)
}

fn join_fields<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    fields.map(str::trim).filter(|f| !f.is_empty()).collect::<Vec<_>>().join(" ")
}

fn string_column(df: &DataFrame, name: &str, file: &Path) -> Result<StringChunked> {
    let col = df.column(name).map_err(|_| {
        let names: Vec<String> = df.get_column_names().iter().map(|n| n.to_string()).collect();
        anyhow::anyhow!("{}: no column {name:?} (columns: {})", file.display(), names.join(", "))
    })?;
    let cast = col.cast(&DataType::String)?;
    Ok(cast.str()?.clone())
}

fn csv_frame(file: &Path, header: bool, separator: u8) -> Result<DataFrame> {
    CsvReadOptions::default()
        .with_has_header(header)
        .with_infer_schema_length(Some(0))
        .map_parse_options(|o| o.with_separator(separator))
        .try_into_reader_with_file_path(Some(file.to_path_buf()))
        .and_then(|r| r.finish())
        .map_err(|e| anyhow::anyhow!("{}: malformed CSV: {e}", file.display()))
}

fn read_table(file: &Path, kind: TableFile) -> Result<DataFrame> {
    if !file.is_file() {
        bail!("{} does not exist", file.display());
    }
    match kind {
        TableFile::Csv => csv_frame(file, true, b','),
        TableFile::Tsv => csv_frame(file, true, b'\t'),
        TableFile::Jsonl => {
            let f = std::fs::File::open(file)?;
            JsonReader::new(f)
                .with_json_format(JsonFormat::JsonLines)
                .finish()
                .map_err(|e| anyhow::anyhow!("{}: malformed JSONL: {e}", file.display()))
        }
        TableFile::Parquet => {
            let f = std::fs::File::open(file)?;
            ParquetReader::new(f).finish().map_err(|e| anyhow::anyhow!("{}: unreadable Parquet: {e}", file.display()))
        }
    }
}

/// Zhang et al. 2015 CSV: headerless, quoted, 1-based labels, `\n` escaped.
fn read_zhang_csv(c: &mut Collector, columns: &[String], text: &[String]) -> Result<()> {
    let file = c.file;
    if !file.is_file() {
        bail!("{} does not exist", file.display());
    }
    let df = csv_frame(file, false, b',')?;
    if df.width() != columns.len() {
        bail!("{}: {} columns, the format says {} ({})", file.display(), df.width(), columns.len(), columns.join(","));
    }
    // Every field of these files is quoted, so an empty one reads as "" and a
    // missing one as null: a null means a row with too few fields.
    for i in 0..df.width() {
        let column = df.select_at_idx(i).expect("in range").str()?;
        if let Some(row) = column.iter().position(|v| v.is_none()) {
            bail!(
                "{}, line {}: malformed row, fewer than the {} fields of the format ({})",
                file.display(),
                row + 1,
                columns.len(),
                columns.join(",")
            );
        }
    }
    let col = |name: &str| -> Result<StringChunked> {
        let i = columns.iter().position(|c| c == name).with_context(|| format!("format has no column {name:?}"))?;
        Ok(df.select_at_idx(i).expect("width checked").str()?.clone())
    };
    let labels = col("label")?;
    let texts: Vec<StringChunked> = text.iter().map(|t| col(t)).collect::<Result<_>>()?;
    for (row, value) in labels.iter().enumerate() {
        let place = format!("line {}", row + 1);
        let value = value.with_context(|| format!("{}, {place}: missing label", file.display()))?;
        let label = c.numbered(value, 1, &place)?;
        let joined = join_fields(texts.iter().map(|t| t.get(row).unwrap_or(""))).replace("\\n", "\n");
        c.push(joined, label, &place)?;
    }
    Ok(())
}

/// TREC: `COARSE:fine question text`, read as latin-1 (the train file has a 0xF0 byte).
fn read_trec(c: &mut Collector) -> Result<()> {
    let file = c.file;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let text: String = bytes.iter().map(|&b| b as char).collect();
    for (i, line) in text.lines().enumerate() {
        let place = format!("line {}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        let (label, rest) =
            line.split_once(' ').with_context(|| format!("{}, {place}: expected `COARSE:fine question`", file.display()))?;
        let (coarse, _fine) =
            label.split_once(':').with_context(|| format!("{}, {place}: label {label:?} is not COARSE:fine", file.display()))?;
        let index = c.class_index(coarse, &place)?;
        c.push(rest.trim().to_string(), index, &place)?;
    }
    Ok(())
}

fn sorted_files(dir: &Path, extension: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read folder {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    Ok(files)
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

fn read_text_file(path: &Path, encoding: Encoding) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    match encoding {
        Encoding::Latin1 => Ok(latin1(&bytes)),
        Encoding::Utf8 | Encoding::Utf8OrLatin1 => match String::from_utf8(bytes) {
            Ok(text) => Ok(text),
            Err(e) if encoding == Encoding::Utf8OrLatin1 => Ok(latin1(e.as_bytes())),
            Err(e) => bail!(
                "{} is not valid UTF-8 (byte {}); set encoding = \"latin1\" or \"utf8_or_latin1\" if that is its encoding",
                path.display(),
                e.utf8_error().valid_up_to()
            ),
        },
    }
}

/// One folder per class; `ignored` folders (aclImdb's `unsup`) are not classes.
fn read_folders(c: &mut Collector, extension: &str, encoding: Encoding, ignored: &[&str]) -> Result<()> {
    let root = c.file;
    if !root.is_dir() {
        bail!("{} is not a folder", root.display());
    }
    for entry in std::fs::read_dir(root)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && !ignored.contains(&name.as_str()) && !c.spec.classes.contains(&name) {
            bail!("{}: folder {name:?} is not one of the classes {:?}", root.display(), c.spec.classes);
        }
    }
    for (label, class) in c.spec.classes.clone().iter().enumerate() {
        let dir = root.join(class);
        for path in sorted_files(&dir, extension)? {
            let text = read_text_file(&path, encoding)?;
            let place = format!("file {}", path.display());
            c.push(text.trim().to_string(), label, &place)?;
        }
    }
    Ok(())
}

/// Unlabeled texts of an aclImdb split folder (`unsup/`), for further pre-training.
pub fn read_unlabeled_folder(dir: &Path) -> Result<Vec<String>> {
    sorted_files(dir, "txt")?.iter().map(|p| read_text_file(p, Encoding::Utf8).map(|t| t.trim().to_string())).collect()
}
