//! A LibTorch computation as one node of burn's autodiff graph, differentiated
//! by LibTorch's autograd.
//!
//! How the backward works: the node's inputs enter torch as detached leaves that
//! require grad, so torch records `f` on them alone. Burn's backward hands the
//! node the gradient `g` of its output `y`; torch's autograd of `sum(y * g)`
//! with respect to the leaves is exactly the vector-Jacobian product `g^T dy/dx`.
//! The node keeps its inputs' burn handles until its backward has run, so that
//! burn-tch never updates them in place while torch's graph still reads them.

// burn 0.22 marks burn-tch deprecated; it is this project's default CPU backend.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::TchTensor;
use burn::backend::{Autodiff, LibTorch};
use burn::tensor::Tensor;

pub(crate) type Ad = Autodiff<LibTorch>;
/// An autodiff tensor of LibTorch (burn-autodiff's `AutodiffTensor<LibTorch>`).
pub(crate) type AdTensor = <Ad as burn::backend::BackendTypes>::FloatTensorPrimitive;

/// A float tensor's LibTorch form: tracked by autodiff, or plain (inference).
pub(crate) enum Torch {
    Autodiff(AdTensor),
    Plain(TchTensor),
}

pub(crate) fn torch<const D: usize>(t: &Tensor<D>) -> Option<Torch> {
    if let Ok(p) = t.clone().try_into_primitive::<Ad>() {
        return Some(Torch::Autodiff(p));
    }
    t.clone().try_into_primitive::<LibTorch>().ok().map(Torch::Plain)
}

/// The plain LibTorch tensor of a constant input (a mask), with or without autodiff.
pub(crate) fn constant<const D: usize>(t: &Tensor<D>) -> Option<tch::Tensor> {
    Some(match torch(t)? {
        Torch::Autodiff(p) => p.into_primitive().tensor,
        Torch::Plain(p) => p.tensor,
    })
}

/// `f` on the LibTorch tensors of `inputs` (all of one kind: autodiff or plain),
/// as one autodiff node when they are autodiff tensors. `None` when any input is
/// not a LibTorch tensor.
pub(crate) fn apply<const N: usize, const D: usize>(
    inputs: [Option<Torch>; N],
    f: impl FnOnce(&[tch::Tensor]) -> tch::Tensor,
) -> Option<Tensor<D>> {
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
