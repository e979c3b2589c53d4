//! Layer-wise decreasing learning rate (Section 5.3.3 of the paper):
//! the top block gets the base rate, block k-1 gets ξ times block k's, the
//! embeddings the next factor down; the pooler and the heads the base rate.
//! One function maps a parameter's module path to its factor.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerwiseDecay {
    /// ξ: 1.0 turns the decay off; the paper tries 0.95, 0.90, 0.85.
    pub xi: f64,
    /// Keep the embeddings at the base rate, as the original code did.
    #[serde(default)]
    pub embeddings_at_base_lr: bool,
}

impl LayerwiseDecay {
    pub const OFF: Self = Self { xi: 1.0, embeddings_at_base_lr: false };

    /// Factor of the base learning rate for the parameter at `path` in a model
    /// whose encoder has `num_layers` blocks (`encoder.layer.K`).
    pub fn factor(&self, path: &str, num_layers: usize) -> f64 {
        if self.xi == 1.0 {
            return 1.0;
        }
        let mut parts = path.split('.');
        while let Some(part) = parts.next() {
            match part {
                "embeddings" if !self.embeddings_at_base_lr => return self.xi.powi(num_layers as i32),
                "embeddings" => return 1.0,
                "layer" => {
                    if let Some(k) = parts.next().and_then(|k| k.parse::<usize>().ok()) {
                        return self.xi.powi((num_layers - 1 - k.min(num_layers - 1)) as i32);
                    }
                }
                _ => {}
            }
        }
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_to_factor() {
        let d = LayerwiseDecay { xi: 0.9, embeddings_at_base_lr: false };
        let f = |p| d.factor(p, 12);
        assert_eq!(f("bert.encoder.layer.11.output.dense.weight"), 1.0);
        assert!((f("bert.encoder.layer.10.attention.self_attention.query.weight") - 0.9).abs() < 1e-12);
        assert!((f("bert.encoder.layer.0.output.dense.bias") - 0.9f64.powi(11)).abs() < 1e-12);
        assert!((f("bert.embeddings.word_embeddings.weight") - 0.9f64.powi(12)).abs() < 1e-12);
        assert_eq!(f("bert.pooler.dense.weight"), 1.0);
        assert_eq!(f("classifier.weight"), 1.0);
        let original = LayerwiseDecay { xi: 0.9, embeddings_at_base_lr: true };
        assert_eq!(original.factor("bert.embeddings.LayerNorm.gamma", 12), 1.0);
        assert_eq!(LayerwiseDecay::OFF.factor("bert.encoder.layer.0.output.dense.bias", 12), 1.0);
    }
}
