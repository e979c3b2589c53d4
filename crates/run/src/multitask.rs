//! The multi-task stage of a run (Section 5.4 of the paper): one encoder
//! shared by the tasks of `[multitask]`, one head per task, trained together;
//! the run then fine-tunes the target task from the shared encoder and its
//! head. The stage is cached by the identity of its own settings and shared
//! by every run that needs the same one.

use anyhow::{Result, bail};
use bertfit_data::{BertTokenizer, DatasetSpec, catalogue};
use bertfit_model::{BertConfig, BertForMultiTask, save_hf_weights};
use bertfit_train::progress::ProgressTarget;
use bertfit_train::{EncodedSplit, FinetuneResult, Outcome, RunControl, TaskData};
use burn::module::Module;
use burn::tensor::Device;

use crate::finetune_config::{MultitaskConfig, RunConfig};
use crate::identity::identity;
use crate::stage::Stage;
use crate::task::{Task, load_task};

/// The identity of a run's multi-task stage: its datasets, their `[data]`
/// settings, the stage's training, the features its heads read, the model's
/// weights and the backend.
pub fn stage_identity(config: &RunConfig, multitask: &MultitaskConfig, model_fingerprint: &str, backend: &str) -> Result<String> {
    let specs: Vec<DatasetSpec> = multitask.datasets.iter().map(|name| catalogue::find(name)).collect::<Result<_>>()?;
    let mut data = config.data.clone();
    data.dataset = String::new();
    data.truncation = Some(config.data.truncation());
    Ok(identity(vec![
        ("datasets", serde_json::json!(specs)),
        ("data", serde_json::json!(data)),
        ("training", serde_json::json!(multitask.training)),
        ("features", serde_json::json!(config.head.features)),
        ("model", model_fingerprint.into()),
        ("backend", backend.into()),
    ]))
}

/// Trains the stage, or reads it back when another run already did. `target`
/// is the run's own dataset, already loaded; the others are loaded here, only
/// when the stage trains.
#[allow(clippy::too_many_arguments)]
pub fn multitask_stage(
    config: &RunConfig,
    multitask: &MultitaskConfig,
    identity: &str,
    target: &Task,
    tokenizer: &BertTokenizer,
    model_dir: &std::path::Path,
    bert_config: &BertConfig,
    device: &Device,
    progress: &ProgressTarget,
) -> Result<(BertForMultiTask, FinetuneResult)> {
    let stage = Stage::new("multitask", identity);
    let labels: Vec<usize> = multitask.datasets.iter().map(|name| Ok(catalogue::find(name)?.classes.len())).collect::<Result<_>>()?;
    let features = config.head.features;
    let quiet = matches!(progress, ProgressTarget::Quiet);
    let finished = || -> Result<Option<(BertForMultiTask, FinetuneResult)>> {
        let Some(result) = stage.finished::<FinetuneResult>()? else { return Ok(None) };
        let model = BertForMultiTask::from_finetuned(&stage.model_dir(), bert_config, &labels, features, device)?;
        if !quiet {
            eprintln!("multi-task stage done already ({}); fine-tuning on {}", stage.dir.display(), config.data.dataset);
        }
        Ok(Some((model, result)))
    };
    if let Some(done) = finished()? {
        return Ok(done);
    }
    // Another worker may be training it: wait for it rather than train it twice.
    let _lock = stage.claim(quiet)?;
    if let Some(done) = finished()? {
        return Ok(done);
    }
    if !quiet {
        eprintln!("multi-task stage on {} ({})", multitask.datasets.join(", "), stage.dir.display());
    }
    let others: Vec<Option<Task>> = multitask
        .datasets
        .iter()
        .map(|name| (*name != config.data.dataset).then(|| load_task(&config.data, name, tokenizer)).transpose())
        .collect::<Result<_>>()?;
    let tasks: Vec<TaskData<EncodedSplit>> = others
        .iter()
        .map(|loaded| {
            let task = loaded.as_ref().unwrap_or(target);
            let [train, dev, test] = &task.splits;
            TaskData { name: task.dataset.name.clone(), train, dev, test }
        })
        .collect();
    let model = BertForMultiTask::from_pretrained(model_dir, bert_config, &labels, features, device)?.train();
    let checkpoints = stage.checkpoints();
    let control =
        RunControl { checkpoints: Some(&checkpoints), identity: Some(identity.into()), stop_after_steps: None, progress: progress.clone() };
    let Outcome::Finished(done) = bertfit_train::train_tasks(model, &tasks, &multitask.training, device, &control)? else {
        bail!("the multi-task stage stopped early");
    };
    save_hf_weights(&done.model, &stage.model_dir())?;
    stage.finish(&done.result)?;
    Ok((done.model, done.result))
}
