//! bertfit-run: one job end to end. A fine-tuning run (`bertfit finetune`,
//! every cell of an experiment) or a further pre-training (`bertfit
//! pretrain`): its TOML schema, checked; its identity; the stages it builds on
//! (further pre-training, multi-task fine-tuning), cached and shared; its
//! model and data; its folder of results; the fine-tuned model exported in
//! HF's layout. Knows nothing of experiments, profiles or tables.

pub mod export;
pub mod finetune;
pub mod finetune_config;
pub mod identity;
pub mod model_source;
pub mod multitask;
pub mod options;
pub mod predictions;
pub mod pretrain;
pub mod pretrain_config;
pub mod results;
pub mod run_lock;
pub mod slurm;
pub mod stage;
pub mod task;

pub use finetune::{PreparedRun, RunMetrics, execute, summary};
pub use finetune_config::{DataConfig, MultitaskConfig, RunConfig};
pub use options::{RunOptions, resolve_backend, stop_after_steps};
pub use predictions::{Predictions, predictions_path, read_predictions};
pub use pretrain::{PreparedPretrain, PretrainMetrics, execute_pretrain, pretrain_stage};
pub use pretrain_config::{Corpus, PretrainRunConfig, PretrainSection};
pub use results::{commit, finished, set_commit, write_atomic};
