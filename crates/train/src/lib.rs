//! bertfit-train: optimizer, schedules, the training loops (fine-tuning,
//! multi-task, BERT-Feat; further pre-training with masked LM) and the one
//! checkpoint/resume mechanism they share. Knows nothing of TOML files or
//! experiments.

pub mod checkpoint;
pub mod control;
pub mod feat;
pub mod finetune;
pub mod layerwise;
pub mod loss;
pub mod optimizer;
pub mod plan;
pub mod pretrain;
pub mod progress;
pub mod resume;
pub mod schedule;
pub mod setting;
pub mod throughput;

pub use checkpoint::Checkpoints;
pub use control::RunControl;
pub use feat::FeatureSplit;
pub use finetune::{
    EncodedSplit, EpochRecord, Examples, FinetuneConfig, FinetuneResult, Finetuned, Outcome, Precision, SplitPredictions, TaskData,
    TaskErrors, Trainee, argmax, error_rate, finetune, predict_probabilities, train_tasks, wrong_share,
};
pub use layerwise::LayerwiseDecay;
pub use loss::cross_entropy;
pub use optimizer::{AdamW, GradNorm, OptimizerConfig, OptimizerKind, OptimizerState};
pub use plan::TaskSampling;
pub use pretrain::{MlmData, PretrainConfig, PretrainOutcome, PretrainRecord, PretrainResult, pretrain};
pub use schedule::{LrSchedule, Schedule, ScheduleConfig, ScheduleKind, Warmup};
pub use setting::{InvalidSetting, invalid_setting};
