//! bertfit-train: optimizer, schedules, the training loop (fine-tuning,
//! multi-task, BERT-Feat), checkpoints.

pub mod checkpoint;
pub mod feat;
pub mod finetune;
pub mod layerwise;
pub mod loss;
pub mod optimizer;
pub mod schedule;

pub use checkpoint::Checkpoints;
pub use feat::FeatureSplit;
pub use finetune::{
    EncodedSplit, EpochRecord, Examples, FinetuneConfig, FinetuneResult, Finetuned, Outcome, RunControl, TaskData, TaskErrors,
    TaskSampling, Trainee, error_rate, finetune, predict_probabilities, train_tasks,
};
pub use layerwise::LayerwiseDecay;
pub use loss::cross_entropy;
pub use optimizer::{AdamW, OptimizerConfig, OptimizerKind, OptimizerState};
pub use schedule::{LrSchedule, Schedule, ScheduleConfig, ScheduleKind, Warmup};
