//! LibTorch's own kernels for the encoder blocks and the optimizer on `--backend
//! tch`: each `BertLayer` as one node of burn's autodiff graph whose backward is
//! LibTorch's autograd, and AdamW in place.
//!
//! Why: burn-autodiff 0.22.1 records attention, softmax and LayerNorm as chains
//! of small ops (matmul, max, sub, exp, sum, div, ...; mean, sub, mul, sqrt, ...)
//! and differentiates each link into a fresh tensor; burn-tch takes torch's
//! fused attention only without a bias. Here a block runs what PyTorch runs for
//! HF's `BertLayer` (`sdpa` attention, `layer_norm`, GELU), and its backward is
//! one pass of torch's engine, which frees and reuses buffers as it goes
//! (measured in `results/bench/`: the backward at seq 32 fell from about 340 to
//! 130 ms a step).
//!
//! Each function returns `None` when its tensors are not LibTorch's; the caller
//! then runs burn's own ops (every other backend).
//!
//! How the backward works: the node's inputs enter torch as detached leaves that
//! require grad, so torch records `f` on them alone. Burn's backward hands the
//! node the gradient `g` of its output `y`; torch's autograd of `sum(y * g)`
//! with respect to the leaves is exactly the vector-Jacobian product `g^T dy/dx`.
//! The node keeps its inputs' burn handles until its backward has run, so that
//! burn-tch never updates them in place while torch's graph still reads them.

// burn 0.22 marks burn-tch deprecated; it is this project's default CPU backend.
#![allow(deprecated)]
// Functions that cannot use LibTorch give their tensors back in `Err`.
#![allow(clippy::result_large_err)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::TchTensor;
use burn::backend::{Autodiff, LibTorch};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;

use crate::bert::BertLayer;
use crate::config::HiddenAct;

type Ad = Autodiff<LibTorch>;
/// An autodiff tensor of LibTorch (burn-autodiff's `AutodiffTensor<LibTorch>`).
type AdTensor = <Ad as burn::backend::BackendTypes>::FloatTensorPrimitive;

/// A float tensor's LibTorch form: tracked by autodiff, or plain (inference).
enum Torch {
    Autodiff(AdTensor),
    Plain(TchTensor),
}

fn torch<const D: usize>(t: &Tensor<D>) -> Option<Torch> {
    if let Ok(p) = t.clone().try_into_primitive::<Ad>() {
        return Some(Torch::Autodiff(p));
    }
    t.clone().try_into_primitive::<LibTorch>().ok().map(Torch::Plain)
}

/// The plain LibTorch tensor of a constant input (a mask), with or without autodiff.
fn constant<const D: usize>(t: &Tensor<D>) -> Option<tch::Tensor> {
    Some(match torch(t)? {
        Torch::Autodiff(p) => p.into_primitive().tensor,
        Torch::Plain(p) => p.tensor,
    })
}

/// `f` on the LibTorch tensors of `inputs` (all of one kind: autodiff or plain),
/// as one autodiff node when they are autodiff tensors. `None` when any input is
/// not a LibTorch tensor.
fn apply<const N: usize, const D: usize>(inputs: [Option<Torch>; N], f: impl FnOnce(&[tch::Tensor]) -> tch::Tensor) -> Option<Tensor<D>> {
    let mut autodiff = Vec::with_capacity(N);
    let mut plain = Vec::with_capacity(N);
    for input in inputs {
        match input? {
            Torch::Autodiff(p) => autodiff.push(p),
            Torch::Plain(p) => plain.push(p.tensor),
        }
    }
    if plain.len() == N {
        return Some(Tensor::from_primitive::<LibTorch>(TchTensor::new(tch::no_grad(|| f(&plain)))));
    }
    let autodiff: [AdTensor; N] = autodiff.try_into().ok()?;
    Some(Tensor::from_primitive::<Ad>(torch_node(autodiff, f)))
}

/// burn-autodiff node running `f` in LibTorch, differentiated by LibTorch.
#[derive(Debug)]
struct TorchAutograd;

/// What the node's backward needs: the torch graph's output, its leaves, and
/// the inputs' burn handles (kept, so that burn-tch does not write into them).
#[derive(Debug, Clone)]
struct TorchGraph {
    output: TchTensor,
    leaves: Vec<TchTensor>,
    _inputs: Vec<TchTensor>,
}

impl<const N: usize> Backward<LibTorch, N> for TorchAutograd {
    type State = TorchGraph;

    fn backward(self, ops: Ops<TorchGraph, N>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<LibTorch>(&ops.node);
        let wanted: Vec<_> = ops.parents.into_iter().enumerate().filter_map(|(i, parent)| parent.map(|p| (i, p))).collect();
        if wanted.is_empty() {
            return;
        }
        let graph = ops.state;
        // d/dx sum(y * g) = g^T dy/dx, with g a constant.
        let objective = (&graph.output.tensor * &grad.tensor).sum(tch::Kind::Float);
        let leaves: Vec<&tch::Tensor> = wanted.iter().map(|(i, _)| &graph.leaves[*i].tensor).collect();
        let input_grads = tch::Tensor::run_backward(&[objective], &leaves, false, false);
        for ((_, parent), g) in wanted.into_iter().zip(input_grads) {
            grads.register::<LibTorch>(parent.id, TchTensor::new(g));
        }
    }
}

fn torch_node<const N: usize>(inputs: [AdTensor; N], f: impl FnOnce(&[tch::Tensor]) -> tch::Tensor) -> AdTensor {
    let nodes = inputs.each_ref().map(|t| t.node());
    match TorchAutograd.prepare::<NoCheckpointing>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let kept: Vec<TchTensor> = inputs.into_iter().map(|t| t.into_primitive()).collect();
            let leaves: Vec<tch::Tensor> = kept.iter().map(|t| t.tensor.detach().set_requires_grad(true)).collect();
            let output = f(&leaves);
            let result = TchTensor::new(output.detach());
            let graph =
                TorchGraph { output: TchTensor::new(output), leaves: leaves.into_iter().map(TchTensor::new).collect(), _inputs: kept };
            prep.finish(graph, result)
        }
        OpsKind::UnTracked(prep) => {
            let plain: Vec<tch::Tensor> = inputs.into_iter().map(|t| t.into_primitive().tensor).collect();
            prep.finish(TchTensor::new(tch::no_grad(|| f(&plain))))
        }
    }
}

/// One HF `BertLayer` (`modeling_bert.py`) on `x` `[batch, len, hidden]`, as
/// PyTorch runs it: query / key / value projections, `scaled_dot_product_attention`
/// with the additive mask and dropout on the probabilities (HF's `sdpa`
/// attention), `BertSelfOutput` (dense, dropout, residual, `layer_norm`),
/// `BertIntermediate` (dense, activation) and `BertOutput` (dense, dropout,
/// residual, `layer_norm`). One autodiff node whose parents are `x` and the
/// layer's sixteen parameters, so the whole block's backward is one pass of
/// torch's autograd engine, which reuses and accumulates buffers in place.
/// `dropouts`: the probabilities of the attention probabilities', `BertSelfOutput`'s
/// and `BertOutput`'s dropout, zeros outside training.
pub fn bert_layer(layer: &BertLayer, x: &Tensor<3>, mask_bias: Option<&Tensor<4>>, dropouts: [f64; 3]) -> Option<Tensor<3>> {
    let mask = match mask_bias {
        Some(bias) => Some(constant(bias)?),
        None => None,
    };
    let attention = &layer.attention.self_attention;
    let heads = attention.num_heads as i64;
    let [_, _, hidden] = x.dims();
    let width = [hidden as i64];
    let (eps_attention, eps_output) = (layer.attention.output.layer_norm_eps, layer.output.layer_norm_eps);
    let activation = layer.intermediate.intermediate_act_fn.kind();
    let linear = |l: &Linear| [torch(&l.weight.val()), l.bias.as_ref().and_then(|b| torch(&b.val()))];
    let norm = |n: &LayerNorm| [torch(&n.gamma.val()), n.beta.as_ref().and_then(|b| torch(&b.val()))];
    let [qw, qb] = linear(&attention.query);
    let [kw, kb] = linear(&attention.key);
    let [vw, vb] = linear(&attention.value);
    let [aw, ab] = linear(&layer.attention.output.dense);
    let [ag, an] = norm(&layer.attention.output.LayerNorm);
    let [iw, ib] = linear(&layer.intermediate.dense);
    let [ow, ob] = linear(&layer.output.dense);
    let [og, on] = norm(&layer.output.LayerNorm);
    apply([torch(x), qw, qb, kw, kb, vw, vb, aw, ab, ag, an, iw, ib, ow, ob, og, on], move |t| {
        let [attention_dropout, attention_output_dropout, output_dropout] = dropouts;
        // burn's `Linear` weight is [d_in, d_out]: F.linear takes its transpose.
        let dense = |x: &tch::Tensor, w: usize| x.linear(&t[w].tr(), Some(&t[w + 1]));
        let x = &t[0];
        let (batch, len) = (x.size()[0], x.size()[1]);
        let split = |y: tch::Tensor| y.view([batch, len, heads, -1]).transpose(1, 2);
        let (q, k, v) = (split(dense(x, 1)), split(dense(x, 3)), split(dense(x, 5)));
        let context = if attention_dropout > 0.0 {
            // What SDPA's math path computes with dropout (torch's fused CPU
            // attention takes none), with this module's dropout mask.
            let head_dim = q.size()[3] as f64;
            let scores = (q * head_dim.powf(-0.5)).matmul(&k.transpose(2, 3));
            let scores = match &mask {
                Some(bias) => scores + bias,
                None => scores,
            };
            dropout(&scores.softmax(-1, tch::Kind::Float), attention_dropout).matmul(&v)
        } else {
            tch::Tensor::scaled_dot_product_attention(&q, &k, &v, mask.as_ref(), 0.0, false, None::<f64>, false)
        };
        let context = context.transpose(1, 2).reshape([batch, len, -1]);
        let attended =
            (dropout(&dense(&context, 7), attention_output_dropout) + x).layer_norm(width, Some(&t[9]), Some(&t[10]), eps_attention, true);
        let expanded = dense(&attended, 11);
        let expanded = match activation {
            HiddenAct::Gelu => expanded.gelu("none"),
            HiddenAct::GeluTanh => expanded.gelu("tanh"),
            HiddenAct::Relu => expanded.relu(),
        };
        (dropout(&dense(&expanded, 13), output_dropout) + attended).layer_norm(width, Some(&t[15]), Some(&t[16]), eps_output, true)
    })
}

/// `F.dropout(x, p)` in training: each element zeroed with probability `p`, the
/// rest scaled by 1 / (1 - p). On the CPU the mask (0 or 1 / (1 - p), so that
/// dropout is one multiplication forward and one backward) comes from
/// `dropout_mask` on torch's threads, seeded from torch's generator (so
/// `Device::seed` makes it reproducible), instead of torch's serial Bernoulli
/// draws; on a GPU, torch's own dropout.
fn dropout(x: &tch::Tensor, p: f64) -> tch::Tensor {
    if p <= 0.0 {
        return x.shallow_clone();
    }
    if x.device() != tch::Device::Cpu || p >= 1.0 || x.kind() != tch::Kind::Float {
        return x.dropout(p, true);
    }
    let seed = tch::Tensor::randint(i64::MAX, [1], (tch::Kind::Int64, tch::Device::Cpu)).int64_value(&[0]) as u64;
    let mask = tch::Tensor::empty(x.size(), (tch::Kind::Float, tch::Device::Cpu));
    // SAFETY: `mask` is a fresh contiguous f32 tensor of `numel` elements that
    // nothing else references until it is used below.
    let values = unsafe { std::slice::from_raw_parts_mut(mask.data_ptr() as *mut f32, mask.numel()) };
    let threads = tch::get_num_threads().max(1) as usize;
    crate::dropout_mask::fill_keep_mask(values, p, seed, threads, [(1.0 / (1.0 - p)) as f32, 0.0]);
    x * mask
}

/// One AdamW step's settings, as `torch.optim.AdamW` (single-tensor) applies them.
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    /// Learning rate of this parameter (layer-wise factor applied).
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay of this parameter (0 for biases and LayerNorm).
    pub weight_decay: f64,
    /// 1 - beta1^t and 1 - beta2^t.
    pub bias_correction1: f64,
    pub bias_correction2: f64,
    /// Global clipping factor applied to the gradient (1 when not clipping).
    pub grad_scale: f64,
}

/// The owned LibTorch tensor of `t` when no other tensor shares its storage
/// (burn-tch's own test before it writes in place); `t` back otherwise.
fn unshared(t: Tensor<1>) -> Result<TchTensor, Tensor<1>> {
    use burn::backend::{BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind};
    let DispatchTensor { kind, autodiff } = t.into_dispatch();
    match kind {
        DispatchTensorKind::LibTorch(BackendTensor::Float(p)) if autodiff == DispatchAutodiffContext::Disabled && p.can_mut() => Ok(p),
        kind => Err(Tensor::from_dispatch(DispatchTensor { kind, autodiff })),
    }
}

/// AdamW's update of one parameter, written into the parameter and its two
/// moments in place, as `torch.optim.AdamW` computes it (`exp_avg.lerp_`,
/// `exp_avg_sq.mul_().addcmul_()`, `param.mul_()`, `param.addcdiv_()`), with
/// the gradient's own buffer as the scratch space when nothing else holds it:
/// no new buffer, where burn's tensor ops allocate one for each of about
/// fifteen steps (47 MB each for the word-embedding matrix, each a round of
/// page faults). Returns the updated (parameter, first moment, second moment);
/// gives all four tensors back untouched unless they are LibTorch tensors and
/// the parameter and moments are shared with nothing.
pub fn adamw_in_place(
    param: Tensor<1>,
    grad: Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
    s: &AdamWStep,
) -> Result<[Tensor<1>; 3], [Tensor<1>; 4]> {
    let back = |t: TchTensor| Tensor::<1>::from_primitive::<LibTorch>(t);
    let restore = |r: Result<TchTensor, Tensor<1>>| r.map(back).unwrap_or_else(|t| t);
    let (p, m, v) = match (unshared(param), unshared(m), unshared(v)) {
        (Ok(p), Ok(m), Ok(v)) => (p, m, v),
        (p, m, v) => return Err([restore(p), grad, restore(m), restore(v)]),
    };
    // The (clipped) gradient in its own buffer when unshared, else in a new
    // one: after the moments it is the scratch space.
    let mut g = match unshared(grad) {
        Ok(g) => {
            let mut g = g.tensor;
            if s.grad_scale != 1.0 {
                let _ = tch::no_grad(|| g.g_mul_scalar_(s.grad_scale));
            }
            g
        }
        Err(grad) => match torch(&grad) {
            Some(Torch::Plain(g)) => tch::no_grad(|| g.tensor.g_mul_scalar(s.grad_scale)),
            _ => return Err([back(p), grad, back(m), back(v)]),
        },
    };
    tch::no_grad(|| {
        let (mut pt, mut mt, mut vt) = (p.tensor.shallow_clone(), m.tensor.shallow_clone(), v.tensor.shallow_clone());
        // m <- m + (1 - beta1) (g - m); v <- beta2 v + (1 - beta2) g^2.
        let _ = mt.lerp_(&g, 1.0 - s.beta1);
        let _ = vt.g_mul_scalar_(s.beta2 / (1.0 - s.beta2));
        let _ = vt.addcmul_(&g, &g);
        let _ = vt.g_mul_scalar_(1.0 - s.beta2);
        if s.weight_decay > 0.0 {
            let _ = pt.g_mul_scalar_(1.0 - s.lr * s.weight_decay);
        }
        // p <- p - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), through g's buffer.
        let _ = vt.sqrt_out(&g);
        let _ = g.g_div_scalar_(s.bias_correction2.sqrt());
        let _ = g.g_add_scalar_(s.eps);
        let _ = mt.div_out(&g, &g);
        let _ = g.g_mul_scalar_(s.lr / s.bias_correction1);
        let _ = pt.g_sub_(&g);
    });
    Ok([back(p), back(m), back(v)])
}

/// The squared L2 norm of a LibTorch tensor as a one-element tensor, without
/// the full-size temporary of `square().sum()`; `None` for other backends.
pub fn squared_norm<const D: usize>(t: &Tensor<D>) -> Option<Tensor<1>> {
    match torch(t)? {
        Torch::Plain(t) => {
            let norm = tch::no_grad(|| t.tensor.norm().square().reshape([1]));
            Some(Tensor::from_primitive::<LibTorch>(TchTensor::new(norm)))
        }
        Torch::Autodiff(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_zeroes_p_of_the_elements_scales_the_rest_and_differentiates_through_its_mask() {
        let n = 1 << 21;
        let x = tch::Tensor::ones([n], (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        tch::manual_seed(3);
        let y = dropout(&x, 0.1);
        let values: Vec<f32> = Vec::try_from(&y.detach()).unwrap();
        let scale = (1.0 / 0.9) as f32;
        assert!(values.iter().all(|&v| v == 0.0 || v == scale));
        let dropped = values.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
        assert!((dropped - 0.1).abs() < 1e-3, "dropped {dropped}");
        // d sum(y) / dx is the mask itself.
        let grad = tch::Tensor::run_backward(&[y.sum(tch::Kind::Float)], &[&x], false, false).remove(0);
        assert!(grad.equal(&y.detach()));
        // The same torch seed, the same mask; another seed, another.
        tch::manual_seed(3);
        assert!(dropout(&x, 0.1).equal(&y));
        assert!(!dropout(&x, 0.1).equal(&y));
        assert!(dropout(&x, 0.0).equal(&x));
    }
}
