//! bertfit-tch: the computations only LibTorch runs, behind one narrow
//! interface that the model and the optimizer call on every backend.
//!
//! * [`fused_block`]: a whole HF `BertLayer` as one node of burn's autodiff
//!   graph, computed and differentiated by LibTorch (`sdpa` attention,
//!   `layer_norm`, GELU, dropout with a mask drawn on all cores);
//! * [`adamw_in_place`] and [`squared_norm`]: AdamW's update and the clipping
//!   norm written into LibTorch's buffers, as `torch.optim.AdamW` does;
//! * [`FusedAdamW`] and [`ForeachNorm`]: the same over whole parameter groups
//!   in a few calls (`torch.optim.AdamW(fused=True)`, `clip_grad_norm_(foreach=True)`),
//!   for a GPU, where one launch per tensor costs more than the arithmetic.
//!
//! Each entry point declines (`None`, or [`Applied::Declined`] with its
//! tensors back) when the tensors are not LibTorch's or the crate was built without the `libtorch`
//! feature; the caller then runs burn's own ops, the reference. This crate
//! knows burn's tensors and modules, never bertfit's model: the block's
//! parameters come as the plain [`BlockParams`].
//!
//! Why it pays, measured in `results/bench/`: burn-autodiff 0.22.1 records
//! attention, softmax and LayerNorm as chains of small ops and differentiates
//! each link into a fresh tensor; one torch node per block took the backward
//! at seq 32 from about 340 to 130 ms a step.

pub mod dropout_mask;
pub mod libtorch_version;

#[cfg(feature = "libtorch")]
mod adamw;
#[cfg(feature = "libtorch")]
mod autograd;
#[cfg(feature = "libtorch")]
mod block;
#[cfg(feature = "libtorch")]
mod dropout;
#[cfg(feature = "libtorch")]
mod fused_adamw;

use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;

/// How many CUDA devices LibTorch sees here (0 without the `libtorch` feature,
/// a GPU or its driver).
pub fn cuda_device_count() -> usize {
    #[cfg(feature = "libtorch")]
    return usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
    #[cfg(not(feature = "libtorch"))]
    0
}

/// The feed-forward activation of a block, one variant for each name a HF
/// BERT config gives it (`hidden_act`), so that a config written back keeps
/// its name. The one representation of it: the config parses into it, the
/// reference block and this crate's fused block compute it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `"gelu"`: exact GELU, `x * Φ(x)` with erf.
    Gelu,
    /// `"gelu_new"`: GELU's tanh approximation.
    GeluNew,
    /// `"gelu_pytorch_tanh"`: the same approximation, as torch names it.
    GeluPytorchTanh,
    /// `"relu"`.
    Relu,
}

impl Activation {
    /// Every activation, in the order errors list their names.
    pub const ALL: [Self; 4] = [Self::Gelu, Self::GeluNew, Self::GeluPytorchTanh, Self::Relu];

    /// Its `hidden_act` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gelu => "gelu",
            Self::GeluNew => "gelu_new",
            Self::GeluPytorchTanh => "gelu_pytorch_tanh",
            Self::Relu => "relu",
        }
    }

    /// The activation a `hidden_act` name means, if it is one of [`Self::ALL`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Which positions' outputs a block computes: every one, or the first ([CLS])
/// alone, when nothing after the block reads the others (a classifier on the
/// last block's [CLS]). Keys and values come from every position either way,
/// so [CLS]'s output is the same (up to float rounding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    All,
    Cls,
}

impl Positions {
    /// How many of `len` positions.
    pub fn count(self, len: usize) -> usize {
        match self {
            Self::All => len,
            Self::Cls => len.min(1),
        }
    }
}

/// One `BertLayer`'s parameters and settings, as HF names them.
pub struct BlockParams<'a> {
    pub query: &'a Linear,
    pub key: &'a Linear,
    pub value: &'a Linear,
    pub num_heads: usize,
    /// `attention.output`: dense, LayerNorm and its eps.
    pub attention_output: &'a Linear,
    pub attention_norm: &'a LayerNorm,
    pub attention_norm_eps: f64,
    pub intermediate: &'a Linear,
    pub activation: Activation,
    /// `output`: dense, LayerNorm and its eps.
    pub output: &'a Linear,
    pub output_norm: &'a LayerNorm,
    pub output_norm_eps: f64,
    /// Dropout probabilities of the attention probabilities, `attention.output`
    /// and `output`; zeros outside training.
    pub dropout: [f64; 3],
    /// Mixed precision as `torch.autocast(dtype=torch.bfloat16)` splits it: the
    /// matrix products, attention and activation in bfloat16; the residual
    /// sums, LayerNorm and the softmax statistics in f32. The parameters stay
    /// f32 (the casts are inside the block, so their gradients arrive in f32).
    pub bf16: bool,
}

/// The block on `x` `[batch, len, hidden]` with the additive attention mask
/// `mask_bias` `[batch, heads, len, len]` (none without padding), as one
/// LibTorch computation, its output at `queries`' positions; `None` when
/// LibTorch cannot take it.
pub fn fused_block(params: &BlockParams, x: &Tensor<3>, mask_bias: Option<&Tensor<4>>, queries: Positions) -> Option<Tensor<3>> {
    #[cfg(feature = "libtorch")]
    return block::bert_layer(params, x, mask_bias, queries);
    #[cfg(not(feature = "libtorch"))]
    return {
        let _ = (params, x, mask_bias, queries);
        None
    };
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

/// One parameter's update, as the optimizer hands it to a path that may take
/// it: its values, gradient and moments, flattened.
pub struct UpdateInputs {
    pub param: Tensor<1>,
    pub grad: Tensor<1>,
    pub m: Tensor<1>,
    pub v: Tensor<1>,
}

/// What a LibTorch path did with an [`UpdateInputs`].
#[allow(
    clippy::large_enum_variant,
    reason = "burn's tensors are 256 bytes; one moved per parameter and step costs nothing beside the update"
)]
pub enum Applied {
    /// It took the update: the parameter and its moments, written in place
    /// (for [`FusedAdamW::push`]: to be written by [`FusedAdamW::step`]).
    Done { param: Tensor<1>, m: Tensor<1>, v: Tensor<1> },
    /// It declined (the tensors are not LibTorch's, or shared): the inputs
    /// back untouched, for the next path.
    Declined(UpdateInputs),
}

/// AdamW's update of one parameter written in place into the parameter and its
/// moments, or declined.
pub fn adamw_in_place(inputs: UpdateInputs, step: &AdamWStep) -> Applied {
    #[cfg(feature = "libtorch")]
    return adamw::adamw_in_place(inputs, step);
    #[cfg(not(feature = "libtorch"))]
    return {
        let _ = step;
        Applied::Declined(inputs)
    };
}

/// The squared L2 norm of a LibTorch tensor as a one-element tensor, without
/// the full-size temporary of `square().sum()`; `None` for other tensors.
pub fn squared_norm<const D: usize>(t: &Tensor<D>) -> Option<Tensor<1>> {
    #[cfg(feature = "libtorch")]
    return adamw::squared_norm(t);
    #[cfg(not(feature = "libtorch"))]
    return {
        let _ = t;
        None
    };
}

/// The settings a fused AdamW step shares across its groups.
#[derive(Debug, Clone, Copy)]
pub struct AdamWGroupStep {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// The step being taken, 1 on the first (bias corrections 1 - beta^step).
    pub step: u64,
    /// Global clipping factor applied to the gradients (1 when not clipping).
    pub grad_scale: f64,
}

/// AdamW's step over all parameters at once, as `torch.optim.AdamW(fused=True)`
/// takes it: [`FusedAdamW::push`] gathers each parameter (given back at once,
/// its values still those before the step) into the group of its learning rate
/// and weight decay; [`FusedAdamW::step`] then updates every parameter and its
/// moments in place, one `_fused_adamw_` call per group. The same arithmetic
/// as [`adamw_in_place`], in another order of operations (agreement to f32
/// rounding, tested).
#[derive(Default)]
pub struct FusedAdamW {
    #[cfg(feature = "libtorch")]
    groups: fused_adamw::Groups,
}

impl FusedAdamW {
    /// Takes one parameter into the group of its learning rate and weight
    /// decay ([`Applied::Done`]: written in place by [`FusedAdamW::step`]), or
    /// declines it.
    pub fn push(&mut self, inputs: UpdateInputs, lr: f64, weight_decay: f64) -> Applied {
        #[cfg(feature = "libtorch")]
        return self.groups.push(inputs, lr, weight_decay);
        #[cfg(not(feature = "libtorch"))]
        return {
            let _ = (lr, weight_decay);
            Applied::Declined(inputs)
        };
    }

    /// Updates every parameter pushed, and its moments, in place; the
    /// gradients first multiplied by `step.grad_scale` and by `clip` (a
    /// clipping coefficient left on the device, so the step never waits for it).
    pub fn step(self, step: &AdamWGroupStep, clip: Option<&DeviceScalar>) -> Result<(), String> {
        #[cfg(feature = "libtorch")]
        return self.groups.step(step, clip.map(|c| &c.tensor));
        #[cfg(not(feature = "libtorch"))]
        return {
            let _ = (step, clip);
            Ok(())
        };
    }
}

/// A scalar computed on a LibTorch device and read back only when asked
/// (reading it waits for the device to finish what it was given).
pub struct DeviceScalar {
    #[cfg(feature = "libtorch")]
    tensor: tch::Tensor,
    #[cfg(not(feature = "libtorch"))]
    value: f64,
}

impl DeviceScalar {
    /// The value, read back to the host.
    pub fn value(&self) -> f64 {
        #[cfg(feature = "libtorch")]
        return self.tensor.double_value(&[]);
        #[cfg(not(feature = "libtorch"))]
        return self.value;
    }

    /// `clip_grad_norm_`'s coefficient of this norm, min(max_norm / (norm + 1e-6), 1),
    /// computed on the device as torch computes it.
    pub fn clip_coefficient(&self, max_norm: f64) -> DeviceScalar {
        #[cfg(feature = "libtorch")]
        return DeviceScalar { tensor: tch::no_grad(|| (self.tensor.g_add_scalar(1e-6).reciprocal() * max_norm).clamp_max(1.0)) };
        #[cfg(not(feature = "libtorch"))]
        return DeviceScalar { value: (max_norm / (self.value + 1e-6)).min(1.0) };
    }
}

/// The gradients of a step, gathered for their total L2 norm in one foreach
/// call (`clip_grad_norm_(foreach=True)`).
#[derive(Default)]
pub struct ForeachNorm {
    #[cfg(feature = "libtorch")]
    norms: fused_adamw::Norms,
}

impl ForeachNorm {
    /// Adds a gradient; `false` (and nothing added) unless it is LibTorch's.
    pub fn push<const D: usize>(&mut self, grad: &Tensor<D>) -> bool {
        #[cfg(feature = "libtorch")]
        return self.norms.push(grad);
        #[cfg(not(feature = "libtorch"))]
        return {
            let _ = grad;
            false
        };
    }

    /// The L2 norm of all the gradients pushed together, left on their device.
    pub fn norm(self) -> Result<DeviceScalar, String> {
        #[cfg(feature = "libtorch")]
        return self.norms.norm().map(|tensor| DeviceScalar { tensor });
        #[cfg(not(feature = "libtorch"))]
        return Ok(DeviceScalar { value: 0.0 });
    }
}

/// Whether `t` is a LibTorch tensor on a CUDA device.
pub fn is_cuda<const D: usize>(t: &Tensor<D>) -> bool {
    #[cfg(feature = "libtorch")]
    return fused_adamw::is_cuda(t);
    #[cfg(not(feature = "libtorch"))]
    return {
        let _ = t;
        false
    };
}
