//! A dataset ready for training: train / dev / test examples and where they came from.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::catalogue::Format;
use crate::catalogue::{DatasetSpec, ResolvedFile};
use crate::readers::{Example, read_split, read_unlabeled_folder};
use crate::splits::{Subset, few_shot, stratified_holdout};

/// Where a dataset's splits came from and how they were made: goes into every result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    pub dataset: String,
    pub files: Vec<ResolvedFile>,
    pub split_seed: u64,
    /// Share of train carved out as dev.
    pub dev_fraction: f64,
    /// Share of train carved out as test, when the dataset ships no test split.
    pub test_carved: Option<f64>,
    pub skipped_empty: usize,
    /// Few-shot subset of train, when one was taken.
    pub train_subset: Option<Subset>,
    /// Stratified sample sizes of dev and test, when smaller than the splits.
    pub dev_sample: Option<usize>,
    pub test_sample: Option<usize>,
}

impl Provenance {
    /// The same, its files named by [`crate::paths::portable_path`].
    pub fn portable(&self) -> Self {
        Self { files: self.files.iter().map(|f| f.portable()).collect(), ..self.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub classes: Vec<String>,
    pub language: String,
    pub train: Vec<Example>,
    pub dev: Vec<Example>,
    pub test: Vec<Example>,
    pub provenance: Provenance,
}

fn pick(examples: &[Example], idx: &[usize]) -> Vec<Example> {
    idx.iter().map(|&i| examples[i].clone()).collect()
}

fn labels(examples: &[Example]) -> Vec<usize> {
    examples.iter().map(|e| e.label).collect()
}

impl Dataset {
    /// Reads the files of `spec` and makes the splits: test as given (or carved
    /// from train), dev always carved from train, both stratified by `split_seed`.
    pub fn load(spec: &DatasetSpec, split_seed: u64) -> Result<Self> {
        let train_file = spec.train.resolve(&spec.name, "train")?;
        let mut read = read_split(spec, &train_file.path)?;
        let mut files = vec![train_file];
        let mut skipped = read.skipped_empty;
        let mut train = std::mem::take(&mut read.examples);
        let (test, test_carved) = match &spec.test {
            Some(split) => {
                let file = split.resolve(&spec.name, "test")?;
                let mut read = read_split(spec, &file.path)?;
                files.push(file);
                skipped += read.skipped_empty;
                read.examples.iter_mut().for_each(|e| e.origin.test_file = true);
                (read.examples, None)
            }
            None => {
                let (kept, held) = stratified_holdout(&labels(&train), spec.carve.test, split_seed ^ 0x7e57);
                let test = pick(&train, &held);
                train = pick(&train, &kept);
                (test, Some(spec.carve.test))
            }
        };
        let (kept, held) = stratified_holdout(&labels(&train), spec.carve.dev, split_seed);
        let dev = pick(&train, &held);
        let train = pick(&train, &kept);
        Ok(Self {
            name: spec.name.clone(),
            classes: spec.classes.clone(),
            language: spec.language.clone(),
            train,
            dev,
            test,
            provenance: Provenance {
                dataset: spec.name.clone(),
                files,
                split_seed,
                dev_fraction: spec.carve.dev,
                test_carved,
                skipped_empty: skipped,
                train_subset: None,
                dev_sample: None,
                test_sample: None,
            },
        })
    }

    /// Unlabeled texts the dataset ships beside its train split, for further
    /// pre-training (aclImdb's `train/unsup`, 50,000 reviews); none for others.
    pub fn unlabeled_texts(spec: &DatasetSpec) -> Result<Vec<String>> {
        match spec.format {
            Format::AclImdb => {
                let unsup = spec.train.resolve(&spec.name, "train")?.path.join("unsup");
                if unsup.is_dir() { read_unlabeled_folder(&unsup) } else { Ok(Vec::new()) }
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Stratified, seeded samples of the splits (few-shot runs, quick runs):
    /// `train` a few-shot subset of train; `dev` and `test` about that many
    /// examples. A few-shot run without a `dev` size gets a dev set in
    /// proportion to its train subset: selecting epochs on a dev set far
    /// larger than the training set would use labels a few-shot setting has not.
    pub fn sampled(mut self, train: Option<Subset>, dev: Option<usize>, test: Option<usize>, seed: u64) -> Self {
        if let Some(subset) = train {
            let full = self.train.len();
            let idx = few_shot(&labels(&self.train), subset, seed);
            self.train = pick(&self.train, &idx);
            self.provenance.train_subset = Some(subset);
            if dev.is_none() && self.train.len() < full {
                let fraction = self.train.len() as f64 / full as f64;
                let idx = few_shot(&labels(&self.dev), Subset::Fraction(fraction), seed ^ 0xde5);
                self.dev = pick(&self.dev, &idx);
                self.provenance.dev_sample = Some(self.dev.len());
            }
        }
        if let Some(n) = dev {
            let idx = few_shot(&labels(&self.dev), Subset::Count(n), seed ^ 0xde5);
            self.dev = pick(&self.dev, &idx);
            self.provenance.dev_sample = Some(n);
        }
        if let Some(n) = test {
            let idx = few_shot(&labels(&self.test), Subset::Count(n), seed ^ 0x7e57);
            self.test = pick(&self.test, &idx);
            self.provenance.test_sample = Some(n);
        }
        self
    }
}
