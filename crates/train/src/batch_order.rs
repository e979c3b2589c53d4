//! Which batch comes next: the batches of a fine-tuning epoch as (task,
//! examples), a function of the seed and the epoch only. One task: its train
//! split shuffled (or bucketed by length); several (multi-task fine-tuning,
//! Section 5.4 of the paper): every task's batches drawn together, in
//! proportion to their size or uniformly across tasks.

use bertfit_data::batching::epoch_batches;
use bertfit_data::splits::{SplitMix64, derive_seed};
use serde::{Deserialize, Serialize};

/// How batches are drawn across tasks in multi-task training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TaskSampling {
    /// Every batch of every task once per epoch, shuffled together: tasks are
    /// drawn in proportion to their size.
    #[default]
    Proportional,
    /// Each step draws a task uniformly; a task's batches cycle (reshuffled)
    /// when used up. An epoch has as many steps as all tasks have batches.
    Uniform,
}

/// How a run batches its training examples.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub batch_size: usize,
    /// Batch texts of similar length together.
    pub bucketed: bool,
    /// Across tasks, in multi-task training.
    pub sampling: TaskSampling,
    pub seed: u64,
}

/// The batches of one epoch as `(task, example indices)`, from each task's
/// training examples' lengths, a function of the seed and the epoch only.
/// One task: `epoch_batches` of its train split.
pub fn epoch_plan(lengths: &[Vec<usize>], batching: &Batching, epoch: usize) -> Vec<(usize, Vec<usize>)> {
    let Batching { batch_size, bucketed, sampling, seed } = *batching;
    let batches = |t: usize, round: usize| {
        let seed = if lengths.len() == 1 { seed } else { derive_seed(seed, &format!("task/{t}")) };
        epoch_batches(&lengths[t], batch_size, seed, round, bucketed)
    };
    if lengths.len() == 1 {
        return batches(0, epoch).into_iter().map(|b| (0, b)).collect();
    }
    let mut rng = SplitMix64::new(derive_seed(seed, &format!("tasks/epoch/{epoch}")));
    let per_task: Vec<Vec<Vec<usize>>> = (0..lengths.len()).map(|t| batches(t, epoch)).collect();
    match sampling {
        TaskSampling::Proportional => {
            let mut plan: Vec<(usize, Vec<usize>)> =
                per_task.into_iter().enumerate().flat_map(|(t, bs)| bs.into_iter().map(move |b| (t, b))).collect();
            rng.shuffle(&mut plan);
            plan
        }
        TaskSampling::Uniform => {
            let total: usize = per_task.iter().map(Vec::len).sum();
            let mut cursor = vec![0usize; lengths.len()];
            let mut rounds = vec![0usize; lengths.len()];
            let mut current = per_task;
            (0..total)
                .map(|_| {
                    let t = rng.below(lengths.len());
                    if cursor[t] == current[t].len() {
                        // Used up: the next round of this task's batches, in a new order.
                        rounds[t] += 1;
                        current[t] = batches(t, epoch * 1000 + rounds[t]);
                        cursor[t] = 0;
                    }
                    cursor[t] += 1;
                    (t, current[t][cursor[t] - 1].clone())
                })
                .collect()
        }
    }
}
