//! The six learning-rate schedules in common use, under the names HuggingFace
//! users know (`transformers.get_scheduler`), as one trait. Values match HF's
//! lambdas (`transformers/optimization.py`) step for step: `lr(step)` is the
//! rate the optimizer uses at step `step` (0-based).

use serde::{Deserialize, Serialize};

/// A learning-rate schedule.
pub trait Schedule {
    /// Learning rate used at `step`.
    fn lr(&self, step: usize) -> f64;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    Constant,
    ConstantWithWarmup,
    /// Linear warmup then linear decay to 0 (the paper's; ULMFiT's "slanted triangular").
    Linear,
    /// Warmup then half a cosine to 0 (`num_cycles` 0.5 by default).
    Cosine,
    /// Warmup then `num_cycles` cosines, each restarting from the top (hard restarts).
    CosineWithRestarts,
    /// Warmup then polynomial decay of degree `power` to `lr_end`.
    Polynomial,
}

impl std::str::FromStr for ScheduleKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "constant" => Self::Constant,
            "constant_with_warmup" => Self::ConstantWithWarmup,
            "linear" => Self::Linear,
            "cosine" => Self::Cosine,
            "cosine_with_restarts" => Self::CosineWithRestarts,
            "polynomial" => Self::Polynomial,
            other => anyhow::bail!(
                "unknown schedule {other:?} (expected constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial)"
            ),
        })
    }
}

/// Warmup as a share of all steps (rounded up, as HF's `get_warmup_steps`) or a step count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Warmup {
    Proportion(f64),
    Steps(usize),
}

impl Warmup {
    pub fn steps(&self, total: usize) -> usize {
        match *self {
            Warmup::Proportion(p) => (p * total as f64).ceil() as usize,
            Warmup::Steps(n) => n,
        }
    }
}

/// A schedule's settings, as a run config gives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub kind: ScheduleKind,
    #[serde(default = "default_warmup")]
    pub warmup: Warmup,
    /// Cosine cycles: 0.5 for `cosine`, 1 for `cosine_with_restarts` unless given.
    pub num_cycles: Option<f64>,
    /// Polynomial degree (HF default 1.0).
    #[serde(default = "default_power")]
    pub power: f64,
    /// Final lr of `polynomial` (HF default 1e-7).
    #[serde(default = "default_lr_end")]
    pub lr_end: f64,
}

fn default_warmup() -> Warmup {
    Warmup::Proportion(0.1)
}
fn default_power() -> f64 {
    1.0
}
fn default_lr_end() -> f64 {
    1e-7
}

impl ScheduleConfig {
    /// The paper's: linear warmup over 10% of steps, then linear decay.
    pub fn paper() -> Self {
        Self { kind: ScheduleKind::Linear, warmup: default_warmup(), num_cycles: None, power: 1.0, lr_end: 1e-7 }
    }

    /// Settings out of range, by key under the schedule's table.
    pub fn check(&self) -> Result<(), bertfit_data::settings::InvalidSetting> {
        use bertfit_data::settings::InvalidSetting;
        if let Warmup::Proportion(p) = self.warmup
            && !(0.0..=1.0).contains(&p)
        {
            return Err(InvalidSetting::new("warmup.proportion", format!("must be in [0, 1], not {p}")));
        }
        if let Some(cycles) = self.num_cycles
            && !(cycles > 0.0 && cycles.is_finite())
        {
            return Err(InvalidSetting::new("num_cycles", format!("must be positive, not {cycles}")));
        }
        if !(self.power > 0.0 && self.power.is_finite()) {
            return Err(InvalidSetting::new("power", format!("must be positive, not {}", self.power)));
        }
        if !(self.lr_end >= 0.0 && self.lr_end.is_finite()) {
            return Err(InvalidSetting::new("lr_end", format!("must be zero or positive, not {}", self.lr_end)));
        }
        Ok(())
    }

    /// The schedule for a run of `total` steps at peak rate `lr`.
    pub fn build(&self, lr: f64, total: usize) -> LrSchedule {
        LrSchedule { config: self.clone(), lr, total, warmup: self.warmup.steps(total) }
    }
}

/// A `ScheduleConfig` bound to a peak rate and a length.
#[derive(Debug, Clone, PartialEq)]
pub struct LrSchedule {
    pub config: ScheduleConfig,
    pub lr: f64,
    pub total: usize,
    pub warmup: usize,
}

impl LrSchedule {
    /// HF's multiplier of the base rate at `step`.
    pub fn factor(&self, step: usize) -> f64 {
        let (s, w, t) = (step as f64, self.warmup as f64, self.total as f64);
        let warming = step < self.warmup;
        let warm = s / w.max(1.0);
        let progress = (s - w) / (t - w).max(1.0);
        let c = &self.config;
        match c.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::ConstantWithWarmup => {
                if warming {
                    warm
                } else {
                    1.0
                }
            }
            ScheduleKind::Linear => {
                if warming {
                    warm
                } else {
                    ((t - s) / (t - w).max(1.0)).max(0.0)
                }
            }
            ScheduleKind::Cosine => {
                if warming {
                    return warm;
                }
                let cycles = c.num_cycles.unwrap_or(0.5);
                (0.5 * (1.0 + (std::f64::consts::PI * cycles * 2.0 * progress).cos())).max(0.0)
            }
            ScheduleKind::CosineWithRestarts => {
                if warming {
                    return warm;
                }
                if progress >= 1.0 {
                    return 0.0;
                }
                let cycles = c.num_cycles.unwrap_or(1.0);
                (0.5 * (1.0 + (std::f64::consts::PI * ((cycles * progress) % 1.0)).cos())).max(0.0)
            }
            ScheduleKind::Polynomial => {
                if warming {
                    return warm;
                }
                if step > self.total {
                    return c.lr_end / self.lr;
                }
                let remaining = 1.0 - (s - w) / (t - w);
                ((self.lr - c.lr_end) * remaining.powf(c.power) + c.lr_end) / self.lr
            }
        }
    }
}

impl Schedule for LrSchedule {
    fn lr(&self, step: usize) -> f64 {
        self.lr * self.factor(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: ScheduleKind) -> ScheduleConfig {
        ScheduleConfig { kind, warmup: Warmup::Steps(10), num_cycles: None, power: 1.0, lr_end: 1e-7 }
    }

    #[test]
    fn linear_warms_up_then_decays_to_zero() {
        let s = config(ScheduleKind::Linear).build(1.0, 110);
        assert_eq!(s.lr(0), 0.0);
        assert_eq!(s.lr(5), 0.5);
        assert_eq!(s.lr(10), 1.0);
        assert_eq!(s.lr(60), 0.5);
        assert_eq!(s.lr(110), 0.0);
    }

    #[test]
    fn warmup_by_proportion_rounds_up() {
        assert_eq!(Warmup::Proportion(0.1).steps(105), 11);
        assert_eq!(Warmup::Proportion(0.1).steps(100), 10);
    }
}
