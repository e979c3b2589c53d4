//! A run's per-example predictions, `predictions/dev.csv` and
//! `predictions/test.csv` beside `metrics.json`: for each example of the split
//! its stable id (`DATASET/train|test/RECORD`, see `bertfit_data::Origin`),
//! the gold and predicted class, and the predicted probability of every
//! class, from the model of the epoch dev selected. Paired comparisons of two
//! cells scored on the same test examples are made of them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bertfit_data::Example;
use bertfit_train::argmax;
use polars::prelude::{Column, CsvReadOptions, CsvWriter, DataFrame, DataType, NamedFrom, SerReader, SerWriter, Series};

/// The predictions file of `split` (`dev`, `test`) in a run folder.
pub fn predictions_path(run_dir: &Path, split: &str) -> PathBuf {
    run_dir.join("predictions").join(format!("{split}.csv"))
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
    let path = predictions_path(run_dir, split);
    let dir = path.parent().expect("a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension(format!("partial-{}", std::process::id()));
    let file = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    CsvWriter::new(file).finish(&mut frame).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a predictions file; `expected` examples when the run says how many.
/// A file that is missing a column, has another number of rows, or repeats
/// an id is refused, naming it.
pub fn read_predictions(path: &Path, expected: Option<usize>) -> Result<Predictions> {
    if !path.is_file() {
        bail!("{} does not exist: the run kept no predictions (it was written by an older bertfit)", path.display());
    }
    let frame = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|r| r.finish())
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
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("id,gold,predicted,p_neg,\"p_pos, really\"\n"), "{text}");

        let err = format!("{:#}", read_predictions(&path, Some(4)).unwrap_err());
        assert!(err.contains("test.csv: 3 predictions, but its run's split has 4 examples"), "{err}");
        std::fs::write(&path, "id,gold,predicted\na,x,x\na,x,y\n").unwrap();
        let err = format!("{:#}", read_predictions(&path, None).unwrap_err());
        assert!(err.contains("the id a appears twice"), "{err}");
        std::fs::write(&path, "id,gold\na,x\n").unwrap();
        let err = format!("{:#}", read_predictions(&path, None).unwrap_err());
        assert!(err.contains("no column \"predicted\""), "{err}");
    }
}
