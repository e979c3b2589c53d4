//! bertfit-train: optimizer, schedules, the training loops (fine-tuning,
//! multi-task, BERT-Feat; further pre-training with masked LM) and the one
//! checkpoint/resume mechanism they share. Knows nothing of TOML files or
//! experiments.

pub mod batch_order;
pub mod checkpoint;
pub mod control;
pub mod finetune;
pub mod frozen_features;
pub mod layerwise;
pub mod loss;
pub mod optimizer;
pub mod pretrain;
pub mod progress;
pub mod resume;
pub mod schedule;
pub mod throughput;

pub use batch_order::TaskSampling;
pub use checkpoint::Checkpoints;
pub use control::RunControl;
pub use finetune::{
    EncodedSplit, EpochRecord, Examples, FinetuneConfig, FinetuneResult, Finetuned, Outcome, Precision, SplitPredictions, TaskData,
    TaskErrors, Trainee, argmax, error_rate, finetune, predict_probabilities, train_tasks, wrong_share,
};
pub use frozen_features::FeatureSplit;
pub use layerwise::LayerwiseDecay;
pub use loss::cross_entropy;
pub use optimizer::{AdamW, GradNorm, OptimizerConfig, OptimizerKind, OptimizerState};
pub use pretrain::{MlmData, PretrainConfig, PretrainOutcome, PretrainRecord, PretrainResult, pretrain};
pub use schedule::{LrSchedule, Schedule, ScheduleConfig, ScheduleKind, Warmup};
