//! Cross-entropy on logits, as `torch.nn.functional.cross_entropy` (mean).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean negative log-likelihood of `labels` under softmax(`logits`); a scalar tensor.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [batch, _] = logits.dims();
    let log_probs = log_softmax(logits, 1);
    let picked = log_probs.gather(1, labels.reshape([batch, 1]));
    picked.mean().neg()
}
