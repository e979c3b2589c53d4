//! One HF `BertLayer` (`transformers/models/bert/modeling_bert.py`) as PyTorch
//! runs it, in one LibTorch computation: the block of [`crate::fused_block`].

use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;

use crate::autograd::{apply, constant, torch};
use crate::dropout::dropout;
use crate::{Activation, BlockParams, Positions};

/// One HF `BertLayer` (`modeling_bert.py`) on `x` `[batch, len, hidden]`, as
/// PyTorch runs it: query / key / value projections, `scaled_dot_product_attention`
/// with the additive mask and dropout on the probabilities (HF's `sdpa`
/// attention), `BertSelfOutput` (dense, dropout, residual, `layer_norm`),
/// `BertIntermediate` (dense, activation) and `BertOutput` (dense, dropout,
/// residual, `layer_norm`). One autodiff node whose parents are `x` and the
/// layer's sixteen parameters, so the whole block's backward is one pass of
/// torch's autograd engine, which reuses and accumulates buffers in place.
/// With `queries` [`Positions::Cls`], only [CLS]'s query is attended and only
/// its row goes on (keys and values from every position): `[batch, 1, hidden]`.
pub(crate) fn bert_layer(p: &BlockParams, x: &Tensor<3>, mask_bias: Option<&Tensor<4>>, queries: Positions) -> Option<Tensor<3>> {
    let mask = match mask_bias {
        Some(bias) => Some(constant(bias)?),
        None => None,
    };
    let heads = p.num_heads as i64;
    let [_, _, hidden] = x.dims();
    let width = [hidden as i64];
    let (eps_attention, eps_output, activation, dropouts) = (p.attention_norm_eps, p.output_norm_eps, p.activation, p.dropout);
    let linear = |l: &Linear| [torch(&l.weight.val()), l.bias.as_ref().and_then(|b| torch(&b.val()))];
    let norm = |n: &LayerNorm| [torch(&n.gamma.val()), n.beta.as_ref().and_then(|b| torch(&b.val()))];
    let [qw, qb] = linear(p.query);
    let [kw, kb] = linear(p.key);
    let [vw, vb] = linear(p.value);
    let [aw, ab] = linear(p.attention_output);
    let [ag, an] = norm(p.attention_norm);
    let [iw, ib] = linear(p.intermediate);
    let [ow, ob] = linear(p.output);
    let [og, on] = norm(p.output_norm);
    let bf16 = p.bf16;
    apply([torch(x), qw, qb, kw, kb, vw, vb, aw, ab, ag, an, iw, ib, ow, ob, og, on], move |t| {
        let [attention_dropout, attention_output_dropout, output_dropout] = dropouts;
        // The kind of the matrix products: f32, or bfloat16 under mixed precision.
        let kind = if bf16 { tch::Kind::BFloat16 } else { tch::Kind::Float };
        let low = |x: &tch::Tensor| if x.kind() == kind { x.shallow_clone() } else { x.to_kind(kind) };
        // burn's `Linear` weight is [d_in, d_out]: F.linear takes its transpose.
        let dense = |x: &tch::Tensor, w: usize| low(x).linear(&low(&t[w]).tr(), Some(&low(&t[w + 1])));
        let x = &t[0];
        let (batch, len) = (x.size()[0], x.size()[1]);
        let rows = queries.count(len as usize) as i64;
        // The positions whose outputs are wanted: their queries and residuals.
        let x_rows = if rows == len { x.shallow_clone() } else { x.narrow(1, 0, rows) };
        let mask = mask.map(|bias| if rows == len { bias } else { bias.narrow(2, 0, rows) });
        let split = |y: tch::Tensor, rows: i64| y.view([batch, rows, heads, -1]).transpose(1, 2);
        let (q, k, v) = (split(dense(&x_rows, 1), rows), split(dense(x, 3), len), split(dense(x, 5), len));
        let context = if attention_dropout > 0.0 && x.device() == tch::Device::Cpu {
            // What SDPA's math path computes with dropout (torch's fused CPU
            // attention takes none), with this module's dropout mask; the
            // softmax in f32, as autocast runs it.
            let head_dim = q.size()[3] as f64;
            let scores = (q * head_dim.powf(-0.5)).matmul(&k.transpose(2, 3));
            let scores = match &mask {
                Some(bias) => scores.to_kind(tch::Kind::Float) + bias,
                None => scores,
            };
            low(&dropout(&scores.softmax(-1, tch::Kind::Float), attention_dropout)).matmul(&v)
        } else {
            // torch's fused attention (flash / memory-efficient on CUDA), with
            // its own dropout there.
            let mask = mask.as_ref().map(&low);
            tch::Tensor::scaled_dot_product_attention(&q, &k, &v, mask.as_ref(), attention_dropout, false, None::<f64>, false)
        };
        let context = context.transpose(1, 2).reshape([batch, rows, -1]);
        let residual = |y: tch::Tensor, p: f64, x: &tch::Tensor| dropout(&y.to_kind(tch::Kind::Float), p) + x;
        let attended = residual(dense(&context, 7), attention_output_dropout, &x_rows).layer_norm(
            width,
            Some(&t[9]),
            Some(&t[10]),
            eps_attention,
            true,
        );
        let expanded = dense(&attended, 11);
        let expanded = match activation {
            Activation::Gelu => expanded.gelu("none"),
            Activation::GeluNew | Activation::GeluPytorchTanh => expanded.gelu("tanh"),
            Activation::Relu => expanded.relu(),
        };
        residual(dense(&expanded, 13), output_dropout, &attended).layer_norm(width, Some(&t[15]), Some(&t[16]), eps_output, true)
    })
}
