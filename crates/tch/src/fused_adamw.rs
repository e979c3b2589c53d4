//! AdamW over whole parameter groups, as `torch.optim.AdamW(fused=True)` runs
//! it (`_fused_adamw_`), and the total gradient norm of
//! `clip_grad_norm_(foreach=True)` (`_foreach_norm`): a few kernel launches a
//! step, where the per-tensor update (`adamw.rs`) launches about ten for each
//! parameter, which on a GPU costs more than the arithmetic. tch binds no op
//! on lists of tensors, so these go through the C++ shim in `csrc/optim.cpp`.

// burn 0.22 marks burn-tch deprecated; it is this project's default CPU backend.
#![allow(deprecated)]

use std::collections::BTreeMap;
use std::ffi::{CStr, c_char};

use burn::tensor::Tensor;
use torch_sys::C_tensor;

use crate::adamw::{back, unshared, unshared_state};
use crate::autograd::constant;
use crate::{AdamWGroupStep, Applied, UpdateInputs};

unsafe extern "C" {
    fn bertfit_free_error(message: *mut c_char);
    fn bertfit_foreach_norm(grads: *const *mut C_tensor, n: i64, out: *mut *mut C_tensor) -> *mut c_char;
    fn bertfit_fused_adamw(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        exp_avgs: *const *mut C_tensor,
        exp_avg_sqs: *const *mut C_tensor,
        n: i64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        step: f64,
        grad_scale: f64,
        grad_scale_tensor: *mut C_tensor,
    ) -> *mut c_char;
}

/// The shim's error message, freed, as `Err`.
fn checked(message: *mut c_char) -> Result<(), String> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string from strdup, ours to free.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    unsafe { bertfit_free_error(message) };
    Err(text)
}

fn pointers(tensors: &mut [tch::Tensor]) -> Vec<*mut C_tensor> {
    tensors.iter_mut().map(|t| t.as_mut_ptr()).collect()
}

/// The parameters of one group (one learning rate and weight decay), as
/// LibTorch handles that share the storage of the module's parameters and the
/// optimizer's moments: the fused kernel writes through them.
#[derive(Default)]
struct Group {
    params: Vec<tch::Tensor>,
    grads: Vec<tch::Tensor>,
    exp_avgs: Vec<tch::Tensor>,
    exp_avg_sqs: Vec<tch::Tensor>,
}

/// Parameters gathered for one fused step, grouped as torch's param groups
/// are: by (learning rate, weight decay), keyed by their bits.
#[derive(Default)]
pub(crate) struct Groups {
    groups: BTreeMap<(u64, u64), (f64, f64, Group)>,
}

impl Groups {
    pub(crate) fn push(&mut self, inputs: UpdateInputs, lr: f64, weight_decay: f64) -> Applied {
        let UpdateInputs { param, grad, m, v } = inputs;
        let [p, m, v] = match unshared_state(param, m, v) {
            Ok(state) => state,
            Err([param, m, v]) => return Applied::Declined(UpdateInputs { param, grad, m, v }),
        };
        // The kernel scales the gradient in place: a copy when it is shared.
        let g = match unshared(grad) {
            Ok(g) => g.tensor,
            Err(grad) => match constant(&grad) {
                Some(g) => tch::no_grad(|| g.copy()),
                None => return Applied::Declined(UpdateInputs { param: back(p), grad, m: back(m), v: back(v) }),
            },
        };
        let (_, _, group) =
            self.groups.entry((lr.to_bits(), weight_decay.to_bits())).or_insert_with(|| (lr, weight_decay, Group::default()));
        group.params.push(p.tensor.shallow_clone());
        group.grads.push(g);
        group.exp_avgs.push(m.tensor.shallow_clone());
        group.exp_avg_sqs.push(v.tensor.shallow_clone());
        Applied::Done { param: back(p), m: back(m), v: back(v) }
    }

    /// One `_fused_adamw_` call per group: parameters and moments updated in
    /// place, the gradients scaled by `s.grad_scale` and by `clip` (on the device) first.
    pub(crate) fn step(self, s: &AdamWGroupStep, clip: Option<&tch::Tensor>) -> Result<(), String> {
        let mut clip = clip.map(tch::Tensor::shallow_clone);
        let clip_ptr = clip.as_mut().map_or(std::ptr::null_mut(), |t| t.as_mut_ptr());
        for (lr, weight_decay, mut group) in self.groups.into_values() {
            let n = group.params.len();
            let (params, grads) = (pointers(&mut group.params), pointers(&mut group.grads));
            let (exp_avgs, exp_avg_sqs) = (pointers(&mut group.exp_avgs), pointers(&mut group.exp_avg_sqs));
            // SAFETY: four arrays of n live tensor handles, kept alive by `group`
            // until the call returns (and `clip`, null or alive in `clip`); the
            // shim copies the handles into lists.
            checked(unsafe {
                bertfit_fused_adamw(
                    params.as_ptr(),
                    grads.as_ptr(),
                    exp_avgs.as_ptr(),
                    exp_avg_sqs.as_ptr(),
                    n as i64,
                    lr,
                    s.beta1,
                    s.beta2,
                    weight_decay,
                    s.eps,
                    s.step as f64,
                    s.grad_scale,
                    clip_ptr,
                )
            })?;
        }
        Ok(())
    }
}

/// Gradients gathered for their total L2 norm in one foreach call.
#[derive(Default)]
pub(crate) struct Norms {
    handles: Vec<tch::Tensor>,
}

impl Norms {
    pub(crate) fn push<const D: usize>(&mut self, grad: &Tensor<D>) -> bool {
        constant(grad).map(|g| self.handles.push(g)).is_some()
    }

    pub(crate) fn norm(mut self) -> Result<tch::Tensor, String> {
        if self.handles.is_empty() {
            return Ok(tch::Tensor::from(0f32));
        }
        let grads = pointers(&mut self.handles);
        let mut out: *mut C_tensor = std::ptr::null_mut();
        // SAFETY: n live handles; on success the shim writes a new tensor to
        // `out`, which `from_ptr` takes ownership of.
        checked(unsafe { bertfit_foreach_norm(grads.as_ptr(), grads.len() as i64, &mut out) })?;
        Ok(unsafe { tch::Tensor::from_ptr(out) })
    }
}

/// Whether `t` is a LibTorch tensor on a CUDA device.
pub(crate) fn is_cuda<const D: usize>(t: &Tensor<D>) -> bool {
    constant(t).is_some_and(|t| t.device().is_cuda())
}
