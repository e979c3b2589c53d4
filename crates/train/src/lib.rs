//! bertfit-train: optimizer, schedules, training loops, checkpoints.

pub mod loss;
pub mod optimizer;

pub use optimizer::{AdamW, OptimizerConfig, OptimizerKind};
pub use loss::cross_entropy;
