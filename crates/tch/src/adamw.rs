//! AdamW in place on LibTorch tensors, and the clipping norm: the optimizer
//! phase as `torch.optim.AdamW` and `clip_grad_norm_` run it.

// burn 0.22 marks burn-tch deprecated; it is this project's default CPU backend.
#![allow(deprecated)]

use burn::backend::LibTorch;
use burn::backend::libtorch::TchTensor;
use burn::tensor::Tensor;

use crate::autograd::{Torch, torch};
use crate::{AdamWStep, Applied, UpdateInputs};

/// The owned LibTorch tensor of `t` when no other tensor shares its storage
/// (burn-tch's own test before it writes in place); `t` back otherwise.
#[allow(clippy::result_large_err, reason = "the tensor itself comes back when it is not LibTorch's, to go on with")]
pub(crate) fn unshared(t: Tensor<1>) -> Result<TchTensor, Tensor<1>> {
    use burn::backend::{BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind};
    let DispatchTensor { kind, autodiff } = t.into_dispatch();
    match kind {
        DispatchTensorKind::LibTorch(BackendTensor::Float(p)) if autodiff == DispatchAutodiffContext::Disabled && p.can_mut() => Ok(p),
        kind => Err(Tensor::from_dispatch(DispatchTensor { kind, autodiff })),
    }
}

/// A LibTorch tensor back as burn's.
pub(crate) fn back(t: TchTensor) -> Tensor<1> {
    Tensor::<1>::from_primitive::<LibTorch>(t)
}

/// The owned LibTorch tensors of a parameter and its two moments when none of
/// them is shared; all three back untouched otherwise.
#[allow(clippy::result_large_err, reason = "the tensors themselves come back when LibTorch cannot take them, to go on with")]
pub(crate) fn unshared_state(param: Tensor<1>, m: Tensor<1>, v: Tensor<1>) -> Result<[TchTensor; 3], [Tensor<1>; 3]> {
    let restore = |r: Result<TchTensor, Tensor<1>>| r.map(back).unwrap_or_else(|t| t);
    match (unshared(param), unshared(m), unshared(v)) {
        (Ok(p), Ok(m), Ok(v)) => Ok([p, m, v]),
        (p, m, v) => Err([restore(p), restore(m), restore(v)]),
    }
}

/// AdamW's update of one parameter, written into the parameter and its two
/// moments in place, as `torch.optim.AdamW` computes it (`exp_avg.lerp_`,
/// `exp_avg_sq.mul_().addcmul_()`, `param.mul_()`, `param.addcdiv_()`), with
/// the gradient's own buffer as the scratch space when nothing else holds it:
/// no new buffer, where burn's tensor ops allocate one for each of about
/// fifteen steps (47 MB each for the word-embedding matrix, each a round of
/// page faults). Declines unless the tensors are LibTorch's and the parameter
/// and moments are shared with nothing.
pub(crate) fn adamw_in_place(inputs: UpdateInputs, s: &AdamWStep) -> Applied {
    let UpdateInputs { param, grad, m, v } = inputs;
    let [p, m, v] = match unshared_state(param, m, v) {
        Ok(state) => state,
        Err([param, m, v]) => return Applied::Declined(UpdateInputs { param, grad, m, v }),
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
            _ => return Applied::Declined(UpdateInputs { param: back(p), grad, m: back(m), v: back(v) }),
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
    Applied::Done { param: back(p), m: back(m), v: back(v) }
}

/// The squared L2 norm of a LibTorch tensor as a one-element tensor, without
/// the full-size temporary of `square().sum()`; `None` for other backends.
pub(crate) fn squared_norm<const D: usize>(t: &Tensor<D>) -> Option<Tensor<1>> {
    match torch(t)? {
        Torch::Plain(t) => {
            let norm = tch::no_grad(|| t.tensor.norm().square().reshape([1]));
            Some(Tensor::from_primitive::<LibTorch>(TchTensor::new(norm)))
        }
        Torch::Autodiff(_) => None,
    }
}
