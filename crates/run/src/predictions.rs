//! A run's per-example predictions, `predictions/dev.csv.gz` and
//! `predictions/test.csv.gz` beside `metrics.json` (gzip-compressed CSV, a
//! quarter of the plain text, read with `zcat`; runs written before kept
//! plain `.csv`, which are read as well): for each example of the split
//! its stable id (`DATASET/train|test/RECORD`, see `bertfit_data::Origin`),
//! the gold and predicted class, and the predicted probability of every
//! class, from the model of the epoch dev selected. Paired comparisons of two
//! cells scored on the same test examples are made of them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bertfit_data::Example;
use bertfit_train::argmax;
use polars::prelude::{Column, CsvReadOptions, CsvWriter, DataFrame, DataType, NamedFrom, SerReader, SerWriter, Series};

/// The predictions file of `split` (`dev`, `test`) in a run folder:
/// `SPLIT.csv.gz`, or the plain `SPLIT.csv` an older run wrote.
pub fn predictions_path(run_dir: &Path, split: &str) -> PathBuf {
    let dir = run_dir.join("predictions");
    let plain = dir.join(format!("{split}.csv"));
    if plain.is_file() && !dir.join(format!("{split}.csv.gz")).is_file() { plain } else { dir.join(format!("{split}.csv.gz")) }
}

/// A predictions table as CSV text, decompressed when its file is gzipped.
fn read_text(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_none_or(|e| e != "gz") {
        return Ok(bytes);
    }
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .with_context(|| format!("{}: not a gzip file", path.display()))?;
    Ok(text)
}

/// One split's predictions, as a comparison reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub ids: Vec<String>,
    pub gold: Vec<String>,
    pub predicted: Vec<String>,
}

impl Predictions {
    /// Whether each example was classified right.
    pub fn correct(&self) -> Vec<bool> {
        self.gold.iter().zip(&self.predicted).map(|(g, p)| g == p).collect()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The share of examples classified wrong.
    pub fn error(&self) -> f64 {
        self.correct().iter().filter(|c| !**c).count() as f64 / self.len().max(1) as f64
    }
}

/// Writes `split`'s predictions (`probabilities` in the order of `examples`)
/// into the run folder `run_dir`, atomically.
pub fn write_predictions(
    run_dir: &Path,
    split: &str,
    dataset: &str,
    classes: &[String],
    examples: &[Example],
    probabilities: &[Vec<f32>],
) -> Result<()> {
    assert_eq!(examples.len(), probabilities.len(), "one row of probabilities per example");
    let name = |i: usize| classes[i].clone();
    let mut columns: Vec<Column> = vec![
        Series::new("id".into(), examples.iter().map(|e| e.origin.id(dataset)).collect::<Vec<_>>()).into(),
        Series::new("gold".into(), examples.iter().map(|e| name(e.label)).collect::<Vec<_>>()).into(),
        Series::new("predicted".into(), probabilities.iter().map(|p| name(argmax(p))).collect::<Vec<_>>()).into(),
    ];
    for (c, class) in classes.iter().enumerate() {
        columns.push(Series::new(format!("p_{class}").into(), probabilities.iter().map(|p| p[c]).collect::<Vec<f32>>()).into());
    }
    let mut frame = DataFrame::new(examples.len(), columns).context("predictions table")?;
    let path = run_dir.join("predictions").join(format!("{split}.csv.gz"));
    let mut text = Vec::new();
    CsvWriter::new(&mut text).finish(&mut frame).with_context(|| format!("cannot write {}", path.display()))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &text)?;
    crate::results::write_atomic(&path, gz.finish()?)
}

/// Reads a predictions file; `expected` examples when the run says how many.
/// A file that is missing a column, has another number of rows, or repeats
/// an id is refused, naming it.
pub fn read_predictions(path: &Path, expected: Option<usize>) -> Result<Predictions> {
    if !path.is_file() {
        bail!("{} does not exist: the run kept no predictions (it was written by an older bertfit)", path.display());
    }
    let text = read_text(path)?;
    let frame = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .into_reader_with_file_handle(std::io::Cursor::new(text))
        .finish()
        .map_err(|e| anyhow::anyhow!("{}: malformed CSV: {e}", path.display()))?;
    let column = |name: &str| -> Result<Vec<String>> {
        let c = frame.column(name).map_err(|_| anyhow::anyhow!("{}: no column {name:?}", path.display()))?;
        let c = c.cast(&DataType::String).map_err(|e| anyhow::anyhow!("{}: column {name:?}: {e}", path.display()))?;
        let strings = c.str().map_err(|e| anyhow::anyhow!("{}: column {name:?}: {e}", path.display()))?;
        strings
            .iter()
            .enumerate()
            .map(|(row, v)| v.map(str::to_string).with_context(|| format!("{}, row {}: empty {name}", path.display(), row + 1)))
            .collect()
    };
    let predictions = Predictions { ids: column("id")?, gold: column("gold")?, predicted: column("predicted")? };
    if let Some(n) = expected
        && predictions.len() != n
    {
        bail!("{}: {} predictions, but its run's split has {n} examples", path.display(), predictions.len());
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = predictions.ids.iter().find(|id| !seen.insert(id.as_str())) {
        bail!("{}: the id {dup} appears twice", path.display());
    }
    Ok(predictions)
}

#[cfg(test)]
mod tests {
    use bertfit_data::Origin;

    use super::*;

    #[test]
    fn written_predictions_read_back_and_a_wrong_count_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let classes = vec!["neg".to_string(), "pos, really".to_string()];
        let examples: Vec<Example> =
            (0..3).map(|i| Example { text: format!("t{i}"), label: i % 2, origin: Origin { test_file: true, record: 10 + i } }).collect();
        let probabilities = vec![vec![0.9, 0.1], vec![0.8, 0.2], vec![0.3, 0.7]];
        write_predictions(dir.path(), "test", "toy", &classes, &examples, &probabilities).unwrap();
        let path = predictions_path(dir.path(), "test");
        let read = read_predictions(&path, Some(3)).unwrap();
        assert_eq!(read.ids, ["toy/test/10", "toy/test/11", "toy/test/12"]);
        assert_eq!(read.gold, ["neg", "pos, really", "neg"]);
        assert_eq!(read.predicted, ["neg", "neg", "pos, really"]);
        assert_eq!(read.correct(), [true, false, false]);
        assert!((read.error() - 2.0 / 3.0).abs() < 1e-12);
        assert!(path.ends_with("predictions/test.csv.gz"));
        let text = String::from_utf8(read_text(&path).unwrap()).unwrap();
        assert!(text.starts_with("id,gold,predicted,p_neg,\"p_pos, really\"\n"), "{text}");
        // Written the same way twice, the same bytes (no time in the gzip header).
        let bytes = std::fs::read(&path).unwrap();
        write_predictions(dir.path(), "test", "toy", &classes, &examples, &probabilities).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);

        let err = format!("{:#}", read_predictions(&path, Some(4)).unwrap_err());
        assert!(err.contains("test.csv.gz: 3 predictions, but its run's split has 4 examples"), "{err}");
        // A run written before predictions were compressed: plain CSV, read as well.
        let old = tempfile::tempdir().unwrap();
        let plain = old.path().join("predictions/test.csv");
        std::fs::create_dir_all(plain.parent().unwrap()).unwrap();
        std::fs::write(&plain, text).unwrap();
        assert_eq!(predictions_path(old.path(), "test"), plain);
        assert_eq!(read_predictions(&plain, Some(3)).unwrap(), read);
        std::fs::write(&plain, "id,gold,predicted\na,x,x\na,x,y\n").unwrap();
        let err = format!("{:#}", read_predictions(&plain, None).unwrap_err());
        assert!(err.contains("the id a appears twice"), "{err}");
        std::fs::write(&plain, "id,gold\na,x\n").unwrap();
        let err = format!("{:#}", read_predictions(&plain, None).unwrap_err());
        assert!(err.contains("no column \"predicted\""), "{err}");
        std::fs::write(&path, "not gzip").unwrap();
        let err = format!("{:#}", read_predictions(&path, None).unwrap_err());
        assert!(err.contains("test.csv.gz: not a gzip file"), "{err}");
    }
}
