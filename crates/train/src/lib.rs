//! bertfit-train: optimizer, schedules, the training loops (fine-tuning,
//! multi-task, BERT-Feat; further pre-training with masked LM), checkpoints.

pub mod checkpoint;
pub mod feat;
pub mod finetune_loop;
pub mod layerwise;
pub mod loss;
pub mod optimizer;
pub mod pretrain_loop;
pub mod progress;
pub mod schedule;
pub mod setting;

pub use checkpoint::Checkpoints;
pub use feat::FeatureSplit;
pub use finetune_loop::{
    EncodedSplit, EpochRecord, Examples, FinetuneConfig, FinetuneResult, Finetuned, Outcome, RunControl, TaskData, TaskErrors,
    TaskSampling, Trainee, error_rate, finetune, predict_probabilities, train_tasks,
};
pub use layerwise::LayerwiseDecay;
pub use loss::cross_entropy;
pub use optimizer::{AdamW, OptimizerConfig, OptimizerKind, OptimizerState};
pub use pretrain_loop::{MlmData, PretrainConfig, PretrainOutcome, PretrainRecord, PretrainResult, pretrain};
pub use schedule::{LrSchedule, Schedule, ScheduleConfig, ScheduleKind, Warmup};
pub use setting::{InvalidSetting, invalid_setting};
