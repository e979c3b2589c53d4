//! `bertfit reproduce NAME --plan`: what a run of the grid would take, before
//! anything trains or downloads. The runs; the models and datasets still to
//! fetch, with their sizes; training tokens per cell and in all; disk; and an
//! estimate of the wall time from a short probe of the chosen backend at each
//! cell's shape (random weights: a few training steps and inference batches).
//!
//! Token counts are counted, padding included, when the model and the data are
//! on this machine (the run's own tokenization, batching and padding); else
//! they are upper bounds: every sequence at its window (`max_len`, times
//! `max_chunks` for the hierarchical methods), as if no text were shorter.
//! Further pre-training stages are counted once: a stage is shared by every
//! cell and seed that starts from it, and one already in the stage cache costs
//! nothing.
//! The estimate is only as good as that and the probe.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use bertfit_data::BertTokenizer;
use bertfit_data::Truncation;
use bertfit_data::batching::epoch_batches;
use bertfit_data::catalogue::{self, DatasetSpec};
use bertfit_data::splits::Subset;
use bertfit_model::{Backend, BertConfig};
use bertfit_run::model_source::{ModelLocated, locate_model};
use bertfit_run::task::{load_dataset, load_task};
use bertfit_run::{PreparedPretrain, PretrainRunConfig, RunConfig};
use bertfit_train::finetune::Examples;
use bertfit_train::finetune::evaluation_batches;
use bertfit_train::throughput::probe_classifier;

use crate::grid::{Grid, load_experiment};
use crate::options::ReproduceOptions;
use crate::plan::{dataset_needs, free_bytes};

/// One cell's share of the plan.
struct CellPlan {
    label: String,
    model: String,
    shape: BertConfig,
    /// Whether `shape` was read from the model's config.json (else assumed from its name).
    shape_read: bool,
    seq_len: usize,
    /// Sequences per example (chunks of the hierarchical methods).
    chunks: usize,
    batch: usize,
    sizes: Sizes,
    epochs: usize,
    /// The index of its further pre-training stage in the plan's stages.
    stage: Option<usize>,
    /// Training and evaluation tokens of the run, padding included, when
    /// counted on the data (else upper bounds are computed).
    counted_tokens: Option<(u64, u64)>,
}

/// A further pre-training stage, run once for every cell and seed that starts from it.
struct StagePlan {
    config: PretrainRunConfig,
    /// The first cell that starts from it (whose probe prices it).
    first_cell: usize,
    cells: usize,
    /// Finished already, in the stage cache.
    cached: bool,
}

impl StagePlan {
    /// Sequences an optimizer step reads (its micro-batches together).
    fn sequences_per_step(&self) -> usize {
        let t = &self.config.training;
        t.batch_size * t.grad_accum.max(1)
    }

    /// Masked-LM training tokens: every step's batch at its full window.
    fn tokens(&self) -> u64 {
        let t = &self.config.training;
        t.steps * (self.sequences_per_step() * t.max_len) as u64
    }

    /// The tokens still to train: none when the stage is cached.
    fn tokens_to_train(&self) -> u64 {
        if self.cached { 0 } else { self.tokens() }
    }
}

/// Train / dev / test examples, and whether they were counted on the data or
/// estimated from the catalogue's published sizes.
#[derive(Clone, Copy)]
struct Sizes {
    train: usize,
    dev: usize,
    test: usize,
    counted: bool,
}

impl CellPlan {
    fn tokens_per_example(&self) -> u64 {
        (self.seq_len * self.chunks) as u64
    }

    fn train_tokens(&self) -> u64 {
        match self.counted_tokens {
            Some((train, _)) => train,
            None => self.sizes.train as u64 * self.epochs as u64 * self.tokens_per_example(),
        }
    }

    /// Dev after every epoch, test once.
    fn eval_tokens(&self) -> u64 {
        match self.counted_tokens {
            Some((_, eval)) => eval,
            None => (self.sizes.dev as u64 * self.epochs as u64 + self.sizes.test as u64) * self.tokens_per_example(),
        }
    }
}

/// The plan of experiment `name` under the options' profile and backend, as text.
pub fn plan_report(name: &str, options: &ReproduceOptions) -> Result<String> {
    let dirs = options.experiment_dirs();
    let (experiment, file) = load_experiment(name, &dirs)?;
    let grid = Grid::build(name, experiment, file, &options.profile, &options.set, options.seeds)?;
    let mut out = String::new();
    let mut cells = Vec::new();
    let mut stages: Vec<StagePlan> = Vec::new();
    let mut fetch: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let mut missing: BTreeMap<String, usize> = BTreeMap::new();
    let mut backends = Vec::new();
    for cell in &grid.cells {
        let Some(config) = &cell.config else { continue };
        let label = format!("{} / {}", grid.rows[cell.row].label, grid.columns[cell.column].label);
        let backend = bertfit_run::resolve_backend(options.backend, config.backend.as_deref())?;
        if !backends.contains(&backend) {
            backends.push(backend);
        }
        let located = locate_model(config.model.as_deref());
        match &located {
            ModelLocated::Here(_) => {}
            ModelLocated::Fetch(what) => {
                fetch.insert(format!("model {what}"), None);
            }
            ModelLocated::Missing(why) => *missing.entry(why.clone()).or_default() += 1,
        }
        let needs = dataset_needs(config)?;
        fetch.extend(needs.fetch.into_iter().map(|(what, bytes)| (format!("data {what}"), bytes)));
        if let Some(why) = needs.missing {
            *missing.entry(why).or_default() += 1;
        }
        let mut plan = cell_plan(label, config, &located)?;
        if let Some(stage) = PretrainRunConfig::of_run(config, backend)? {
            plan.stage = Some(match stages.iter().position(|s| s.config == stage) {
                Some(i) => {
                    stages[i].cells += 1;
                    i
                }
                None => {
                    let cached = matches!(located, ModelLocated::Here(_)) && stage_cached(&stage, backend)?;
                    stages.push(StagePlan { config: stage, first_cell: cells.len(), cells: 1, cached });
                    stages.len() - 1
                }
            });
        }
        cells.push(plan);
    }
    let seeds = grid.seeds.len();
    let runs = cells.len() * seeds;
    let backend_names: Vec<String> = backends.iter().map(|b| b.to_string()).collect();
    writeln!(out, "# Plan: {name}, profile {}, backend {}", grid.profile_name, backend_names.join(", "))?;
    writeln!(out, "\n{runs} runs: {} cells x {seeds} seeds; nothing has been fetched or trained for this plan.", cells.len())?;
    write_fetches(&mut out, &fetch, &missing)?;
    write_cells(&mut out, &cells, &stages, seeds)?;
    let probes = probe_all(&cells, &backends)?;
    write_estimate(&mut out, &cells, &stages, seeds, &probes, &backends)?;
    write_disk(&mut out, &cells, &fetch, &options.results)?;
    Ok(out)
}

fn cell_plan(label: String, config: &RunConfig, located: &ModelLocated) -> Result<CellPlan> {
    let model = config.model.clone().unwrap_or_else(|| "all-MiniLM-L6-v2 (default)".into());
    let (shape, shape_read) = match located {
        ModelLocated::Here(dir) => (BertConfig::from_file(&dir.join("config.json"))?, true),
        _ => (assumed_shape(&model), false),
    };
    let spec = catalogue::find(&config.data.dataset)?;
    let data_here = located_here(&spec);
    // The data read once: tokenized when the model is here too, else only split.
    let (sizes, counted_tokens) = match located {
        ModelLocated::Here(dir) if data_here => {
            let (tokens, sizes) = count_tokens(config, dir)?;
            (sizes, Some(tokens))
        }
        _ if data_here => {
            let dataset = load_dataset(&config.data, &config.data.dataset)?;
            (Sizes { train: dataset.train.len(), dev: dataset.dev.len(), test: dataset.test.len(), counted: true }, None)
        }
        _ => (published_sizes(config, &spec), None),
    };
    let truncation = config.data.truncation();
    let chunks = match truncation {
        Truncation::Hierarchical { max_chunks, .. } => max_chunks,
        _ => 1,
    };
    Ok(CellPlan {
        label,
        model,
        shape,
        shape_read,
        seq_len: truncation.sequence_len(config.data.max_len),
        chunks,
        batch: config.training.batch_size,
        sizes,
        epochs: config.training.epochs,
        stage: None,
        counted_tokens,
    })
}

/// The run's training tokens (every epoch, batched as it will be) and
/// evaluation tokens (dev after each epoch, test once), padding included, from
/// its own tokenization of the data; and its split sizes.
fn count_tokens(config: &RunConfig, model_dir: &Path) -> Result<((u64, u64), Sizes)> {
    let tokenizer = BertTokenizer::from_model_dir(model_dir)?;
    let task = load_task(&config.data, &config.data.dataset, &tokenizer)?;
    let [train, dev, test] = &task.splits;
    let t = &config.training;
    let lengths = train.lengths();
    let train_tokens: u64 =
        (0..t.epochs).map(|epoch| train.padded_tokens(&epoch_batches(&lengths, t.batch_size, t.seed, epoch, t.bucketed))).sum();
    let eval = |split| evaluation_batches(split, t.eval_batch_size);
    let eval_tokens = dev.padded_tokens(&eval(dev)) * t.epochs as u64 + test.padded_tokens(&eval(test));
    let sizes = Sizes { train: train.docs.len(), dev: dev.docs.len(), test: test.docs.len(), counted: true };
    Ok(((train_tokens, eval_tokens), sizes))
}

/// Whether the stage cache holds this pre-training finished (the model is on
/// this machine: the stage's identity covers its weights).
fn stage_cached(stage: &PretrainRunConfig, backend: Backend) -> Result<bool> {
    Ok(PreparedPretrain::prepare(stage, Some(backend))?.finished_stage()?.is_some())
}

/// BERT-base or -large by the model's name (Chinese vocabulary for `*chinese*`),
/// for a model not on this machine yet.
fn assumed_shape(model: &str) -> BertConfig {
    let vocab = if model.contains("chinese") { 21_128 } else { 30_522 };
    if model.contains("large") { BertConfig::large(vocab) } else { BertConfig::base(vocab) }
}

/// The run's example counts from the catalogue's published sizes, with the
/// run's carving and sampling applied (its dataset is not here to count).
fn published_sizes(config: &RunConfig, spec: &DatasetSpec) -> Sizes {
    let data = &config.data;
    let rows = spec.train.rows.unwrap_or(0);
    let (test, given_test) = match &spec.test {
        Some(test) => (test.rows.unwrap_or(0), true),
        None => ((rows as f64 * spec.carve.test).round() as usize, false),
    };
    let pool = if given_test { rows } else { rows - test };
    let dev = (pool as f64 * spec.carve.dev).round() as usize;
    let mut train = pool - dev;
    let mut dev_sampled = dev;
    if let Some(subset) = data.train_subset {
        let kept = match subset {
            Subset::Fraction(f) => (train as f64 * f.clamp(0.0, 1.0)).round() as usize,
            Subset::Count(n) => n.min(train),
        };
        dev_sampled = (dev as f64 * kept as f64 / train.max(1) as f64).round() as usize;
        train = kept;
    }
    Sizes {
        train,
        dev: data.dev_size.map_or(dev_sampled, |n| n.min(dev)),
        test: data.test_size.map_or(test, |n| n.min(test)),
        counted: false,
    }
}

fn located_here(spec: &DatasetSpec) -> bool {
    spec.splits().all(|(_, split)| matches!(split.locate(), catalogue::Located::Here(_)))
}

fn write_fetches(out: &mut String, fetch: &BTreeMap<String, Option<u64>>, missing: &BTreeMap<String, usize>) -> Result<()> {
    writeln!(out, "\n## To fetch before training")?;
    if fetch.is_empty() {
        writeln!(out, "\nNothing: every model and dataset is on this machine.")?;
    }
    for (what, bytes) in fetch {
        let size = bytes.map_or("size published nowhere we pin; known once fetched".to_string(), |b| format!("{:.1} MB", b as f64 / 1e6));
        writeln!(out, "- {what} ({size})")?;
    }
    let known: u64 = fetch.values().flatten().sum();
    writeln!(out, "\nDownloads of known size: {:.2} GB.", known as f64 / 1e9)?;
    for (why, n) in missing {
        writeln!(out, "- cannot run here ({n} cells): {why}")?;
    }
    Ok(())
}

fn write_cells(out: &mut String, cells: &[CellPlan], stages: &[StagePlan], seeds: usize) -> Result<()> {
    writeln!(
        out,
        "\n## Runs (per seed; tokens counted with padding where model and data are here, else upper bounds: every sequence at its full window)\n"
    )?;
    writeln!(out, "| cell | model | layers x hidden | window | batch | train / dev / test | epochs | steps | training tokens |")?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|")?;
    for c in cells {
        let window = if c.chunks > 1 { format!("{} x {} chunks", c.seq_len, c.chunks) } else { c.seq_len.to_string() };
        let counted = if c.sizes.counted { "" } else { " (published sizes)" };
        let shape = format!("{} x {}{}", c.shape.num_hidden_layers, c.shape.hidden_size, if c.shape_read { "" } else { " (assumed)" });
        let steps = c.sizes.train.div_ceil(c.batch.max(1)) * c.epochs;
        let mut note = if c.counted_tokens.is_some() { " (counted)" } else { " (at most)" }.to_string();
        if let Some(i) = c.stage {
            write!(note, ", after MLM stage {}", i + 1)?;
        }
        writeln!(
            out,
            "| {} | {} | {shape} | {window} | {} | {} / {} / {}{counted} | {} | {steps} | {}{note} |",
            c.label,
            c.model,
            c.batch,
            c.sizes.train,
            c.sizes.dev,
            c.sizes.test,
            c.epochs,
            tokens(c.train_tokens())
        )?;
    }
    if !stages.is_empty() {
        writeln!(out, "\n## Further pre-training stages (each run once, for every cell and seed that starts from it)\n")?;
        writeln!(out, "| stage | corpus | steps x batch x window | MLM tokens | cells | in the stage cache |")?;
        writeln!(out, "|---|---|---|---|---|---|")?;
        for (i, s) in stages.iter().enumerate() {
            let t = &s.config.training;
            writeln!(
                out,
                "| {} | {} | {} x {} x {} | {} | {} | {} |",
                i + 1,
                s.config.datasets.join(", "),
                t.steps,
                s.sequences_per_step(),
                t.max_len,
                tokens(s.tokens()),
                s.cells,
                if s.cached { "yes: not trained again" } else { "no" }
            )?;
        }
    }
    let stage_tokens: u64 = stages.iter().map(StagePlan::tokens_to_train).sum();
    let train: u64 = cells.iter().map(|c| c.train_tokens()).sum::<u64>() * seeds as u64;
    let eval: u64 = cells.iter().map(|c| c.eval_tokens()).sum::<u64>() * seeds as u64;
    writeln!(
        out,
        "\nIn all ({seeds} seeds): {} fine-tuning tokens, {} MLM tokens still to train, {} evaluation tokens (dev every epoch, test once).",
        tokens(train),
        tokens(stage_tokens),
        tokens(eval)
    )?;
    Ok(())
}

fn tokens(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n => format!("{:.1}K", n as f64 / 1e3),
    }
}

/// Training and inference tokens/s of one shape on one backend.
struct Probe {
    train: f64,
    infer: f64,
    batch: usize,
    seconds: f64,
}

/// What a probe depends on: backend, depth, width and sequence length (the
/// vocabulary's size hardly matters to the speed, so it is left out).
type ProbeKey = (String, usize, usize, usize);

fn probe_key(c: &CellPlan, backend: Backend) -> ProbeKey {
    (backend.to_string(), c.shape.num_hidden_layers, c.shape.hidden_size, c.seq_len)
}

fn probe_all(cells: &[CellPlan], backends: &[Backend]) -> Result<BTreeMap<ProbeKey, Probe>> {
    let mut probes = BTreeMap::new();
    for &backend in backends {
        for c in cells {
            let key = probe_key(c, backend);
            if let std::collections::btree_map::Entry::Vacant(entry) = probes.entry(key) {
                eprintln!(
                    "probing {backend} at {} layers x {} hidden, {} tokens ...",
                    c.shape.num_hidden_layers, c.shape.hidden_size, c.seq_len
                );
                entry.insert(probe(&c.shape, c.seq_len, c.batch, backend)?);
            }
        }
    }
    Ok(probes)
}

/// The probe: the run's batch on a GPU; on a CPU at most 2,048 tokens a step
/// (the quick profiles' whole batch; 4 x 512 at BERT-base, whose 24 x 512 step
/// takes minutes there).
fn probe(shape: &BertConfig, seq_len: usize, batch: usize, backend: Backend) -> Result<Probe> {
    let start = Instant::now();
    let batch = if matches!(backend, Backend::TchCuda(_) | Backend::Wgpu) { batch } else { batch.min((2048 / seq_len).max(1)) };
    let (train, infer) = probe_classifier(shape, seq_len, batch, backend)?;
    Ok(Probe { train, infer, batch, seconds: start.elapsed().as_secs_f64() })
}

fn write_estimate(
    out: &mut String,
    cells: &[CellPlan],
    stages: &[StagePlan],
    seeds: usize,
    probes: &BTreeMap<ProbeKey, Probe>,
    backends: &[Backend],
) -> Result<()> {
    writeln!(out, "\n## Wall time (an estimate, from a probe of the backend on this machine)\n")?;
    for (key, p) in probes {
        writeln!(
            out,
            "- probe {} at {} layers x {} hidden, {} tokens, batch {}: {:.0} training tokens/s, {:.0} inference tokens/s ({:.0} s, random weights)",
            key.0, key.1, key.2, key.3, p.batch, p.train, p.infer, p.seconds
        )?;
    }
    for &backend in backends {
        let mut seconds = 0.0;
        for c in cells {
            let p = &probes[&probe_key(c, backend)];
            seconds += (c.train_tokens() as f64 / p.train + c.eval_tokens() as f64 / p.infer) * seeds as f64;
        }
        for s in stages {
            // MLM steps cost about what fine-tuning steps do per token (measured in results/bench).
            seconds += s.tokens_to_train() as f64 / probes[&probe_key(&cells[s.first_cell], backend)].train;
        }
        writeln!(
            out,
            "\nEstimated on {backend}: {} for all {} runs (at most, where token counts are upper bounds; start-up and downloads not included).",
            duration(seconds),
            cells.len() * seeds
        )?;
    }
    Ok(())
}

fn duration(seconds: f64) -> String {
    match seconds {
        s if s >= 172_800.0 => format!("{:.0} days", s / 86_400.0),
        s if s >= 7_200.0 => format!("{:.1} hours", s / 3_600.0),
        s => format!("{:.0} min", s / 60.0),
    }
}

fn write_disk(out: &mut String, cells: &[CellPlan], fetch: &BTreeMap<String, Option<u64>>, results: &Path) -> Result<()> {
    let downloads: u64 = fetch.values().flatten().sum();
    // A checkpoint holds the weights and AdamW's two moments in f32; one run's at a time.
    let checkpoint = cells.iter().map(|c| c.shape.parameter_count() as u64 * 4 * 3).max().unwrap_or(0);
    writeln!(out, "\n## Disk\n")?;
    writeln!(
        out,
        "Downloads {:.2} GB (an archive unpacks to more than its size, how much is known once unpacked), and a checkpoint of the run in progress, {:.2} GB (weights and AdamW moments, f32).",
        downloads as f64 / 1e9,
        checkpoint as f64 / 1e9
    )?;
    if let Some(free) = free_bytes(results) {
        writeln!(out, "Free where the results go ({}): {:.1} GB.", results.display(), free as f64 / 1e9)?;
    }
    Ok(())
}
