//! bertfit-train: optimizer, schedules, training loops, checkpoints.

pub mod layerwise;
pub mod loss;
pub mod optimizer;
pub mod schedule;

pub use optimizer::{AdamW, OptimizerConfig, OptimizerKind};
pub use loss::cross_entropy;
pub use schedule::{LrSchedule, Schedule, ScheduleConfig, ScheduleKind, Warmup};
pub use layerwise::LayerwiseDecay;
