//! bertfit-paper: the paper's experiments as grids of runs. An experiment file
//! (`experiments/NAME.toml`, built in) gives a base run, two axes, the paper's
//! numbers and claims, and profiles; the runner resolves its grid, trains the
//! runs with bertfit-run, and renders the error-rate table beside the paper's,
//! the claims judged by the statistics, and the plots. The only place that
//! knows experiments, profiles and results folders.

pub mod bundle;
pub mod cell_stats;
pub mod claims;
pub mod cluster;
pub mod compare;
pub mod experiment;
pub mod grid;
pub mod index;
pub mod inference;
pub mod list;
pub mod options;
pub mod overrides;
pub mod plan;
pub mod plan_report;
pub mod plots;
pub mod report;
pub mod reproduce;
pub mod runs;
pub mod status;
pub mod table;
pub mod workers;

pub use list::list;
pub use options::{Action, ReproduceOptions, SlurmOptions};
pub use plan_report::plan_report;
pub use reproduce::reproduce;
