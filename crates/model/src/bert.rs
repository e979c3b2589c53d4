//! BERT encoder, mirroring HuggingFace `transformers/models/bert/modeling_bert.py`.
//!
//! Struct and field names follow the checkpoint names (`embeddings.LayerNorm`,
//! `encoder.layer.N.attention.output.dense`, ...), so loading weights is the
//! structure itself. The one exception is HF's `attention.self`, a Rust
//! keyword: here `attention.self_attention`, renamed in `weights.rs`.

#![allow(non_snake_case)] // `LayerNorm` fields carry the checkpoint's name.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, gelu_approximate, relu, softmax};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};

use bertfit_tch::BlockParams;
pub use bertfit_tch::Positions;

use crate::config::{Activation, BertConfig};

/// One batch of token ids. `attention_mask` is 1 for real tokens, 0 for padding
/// (HF convention); `token_type_ids` defaults to all zeros.
#[derive(Debug, Clone)]
pub struct BertInput {
    pub input_ids: Tensor<2, Int>,
    pub attention_mask: Tensor<2, Int>,
    pub token_type_ids: Option<Tensor<2, Int>>,
    /// Whether any position is padding (known on the host when the batch is
    /// built): without padding the encoder needs no attention mask at all.
    pub padded: bool,
}

/// Hidden state of every layer: `hidden_states[0]` is the embeddings output,
/// `hidden_states[k]` the output of block k (as HF's `output_hidden_states`),
/// up to the [`Readout`]'s depth; the deepest is `[batch, 1, hidden]` when
/// the readout takes only its [CLS] position.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    pub hidden_states: Vec<Tensor<3>>,
}

/// What a reader of the encoder's output needs of it: the layers up to
/// `depth` (0: the embeddings alone, `num_layers`: every block), and of layer
/// `depth` every position or only [CLS]. The rest is not computed: a head on
/// layer 3's [CLS] runs blocks 1 and 2 in full and block 3 for [CLS]'s query
/// alone (its keys and values still come from every position): the values
/// the full encoder gives there, up to float rounding (products of other
/// shapes), for a sixth of MiniLM's encoder less (the last block's other
/// queries, feed-forward and LayerNorms), forward and backward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readout {
    pub depth: usize,
    pub positions: Positions,
}

impl Readout {
    /// Every position of every layer (HF's `output_hidden_states`).
    pub fn full(num_layers: usize) -> Self {
        Self { depth: num_layers, positions: Positions::All }
    }
}

impl BertInput {
    /// Builds the tensors from row-major ids and mask of shape [batch, len].
    pub fn from_ids(input_ids: Vec<i64>, attention_mask: Vec<i64>, shape: [usize; 2], device: &Device) -> Self {
        let tensor = |values: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(values, shape), device);
        let padded = attention_mask.contains(&0);
        Self { input_ids: tensor(input_ids), attention_mask: tensor(attention_mask), token_type_ids: None, padded }
    }
}

impl EncoderOutput {
    pub fn last(&self) -> Tensor<3> {
        self.hidden_states.last().expect("at least the embeddings").clone()
    }
}

/// True when dropout would change its input: a training module on an autodiff device.
pub(crate) fn dropout_active(dropout: &Dropout, device: &Device) -> bool {
    dropout.prob > 0.0 && dropout.training.is_enabled() && device.is_autodiff()
}

/// `nn.Linear` initialised as `BertPreTrainedModel._init_weights`: weight
/// N(0, initializer_range), bias zero.
pub(crate) fn linear(d_in: usize, d_out: usize, std: f64, device: &Device) -> Linear {
    let mut layer = LinearConfig::new(d_in, d_out).with_initializer(Initializer::Normal { mean: 0.0, std }).init(device);
    layer.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    layer
}

pub(crate) fn layer_norm(config: &BertConfig, device: &Device) -> LayerNorm {
    LayerNormConfig::new(config.hidden_size).with_epsilon(config.layer_norm_eps).init(device)
}

/// `BertEmbeddings`: word + absolute position + token type, then LayerNorm and dropout.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub LayerNorm: LayerNorm,
    pub dropout: Dropout,
}

impl BertEmbeddings {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let init = Initializer::Normal { mean: 0.0, std: config.initializer_range };
        let embedding = |n: usize| EmbeddingConfig::new(n, config.hidden_size).with_initializer(init.clone()).init(device);
        Self {
            word_embeddings: embedding(config.vocab_size),
            position_embeddings: embedding(config.max_position_embeddings),
            token_type_embeddings: embedding(config.type_vocab_size),
            LayerNorm: layer_norm(config, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        }
    }

    pub fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Option<Tensor<2, Int>>) -> Tensor<3> {
        let [batch, len] = input_ids.dims();
        let device = input_ids.device();
        let max_len = self.position_embeddings.weight.dims()[0];
        assert!(len <= max_len, "sequence length {len} exceeds max_position_embeddings {max_len}");
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device).reshape([1, len]).expand([batch, len]);
        let token_types = token_type_ids.unwrap_or_else(|| Tensor::<2, Int>::zeros([batch, len], &device));
        let x = self.word_embeddings.forward(input_ids)
            + self.position_embeddings.forward(positions)
            + self.token_type_embeddings.forward(token_types);
        self.dropout.forward(self.LayerNorm.forward(x))
    }
}

/// `BertSelfAttention`: multi-head scaled dot-product attention.
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub dropout: Dropout,
    pub num_heads: usize,
}

impl BertSelfAttention {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let h = config.hidden_size;
        let std = config.initializer_range;
        Self {
            query: linear(h, h, std, device),
            key: linear(h, h, std, device),
            value: linear(h, h, std, device),
            dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
            num_heads: config.num_attention_heads,
        }
    }

    /// `x`: [batch, len, hidden]; `mask_bias`: [batch, heads, len, len], added to
    /// the scores: 0, or the lowest f32 where the key is padding (as HF's
    /// extended attention mask); `None` when no position is padding. The
    /// queries of `queries`' positions: [batch, len or 1, hidden].
    pub fn forward(&self, x: Tensor<3>, mask_bias: Option<Tensor<4>>, queries: Positions) -> Tensor<3> {
        let [batch, len, hidden] = x.dims();
        let heads = self.num_heads;
        let head_dim = hidden / heads;
        let rows = queries.count(len);
        let split = |t: Tensor<3>, rows: usize| t.reshape([batch, rows, heads, head_dim]).swap_dims(1, 2);
        let q = split(self.query.forward(at_positions(x.clone(), queries)), rows);
        let k = split(self.key.forward(x.clone()), len);
        let v = split(self.value.forward(x), len);
        let mask_bias = mask_bias.map(|bias| bias.slice([0..batch, 0..heads, 0..rows, 0..len]));

        let dropout = if dropout_active(&self.dropout, &q.device()) { self.dropout.prob } else { 0.0 };
        let context = if dropout > 0.0 {
            // Dropout on the attention probabilities (HF applies it there), which
            // burn's attention op does not take.
            let scale = (head_dim as f64).powf(-0.5);
            let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
            let scores = match mask_bias {
                Some(bias) => scores + bias,
                None => scores,
            };
            let probs = self.dropout.forward(softmax(scores, 3));
            probs.matmul(v)
        } else {
            // The mask goes in as an additive bias (HF's extended attention mask).
            attention(q, k, v, None, mask_bias, AttentionModuleOptions::default())
        };
        context.swap_dims(1, 2).reshape([batch, rows, hidden])
    }
}

/// `x` [batch, len, width] at `positions`: all of it, or [batch, 1, width] at [CLS].
pub(crate) fn at_positions(x: Tensor<3>, positions: Positions) -> Tensor<3> {
    match positions {
        Positions::All => x,
        Positions::Cls => {
            let [batch, _, width] = x.dims();
            x.slice([0..batch, 0..1, 0..width])
        }
    }
}

/// HF's `BertSelfOutput` and `BertOutput`, which are the same computation on
/// different input widths: projection, dropout, residual, LayerNorm.
#[derive(Module, Debug)]
pub struct BertResidualOutput {
    pub dense: Linear,
    pub LayerNorm: LayerNorm,
    pub dropout: Dropout,
    /// `layer_norm_eps` (burn's `LayerNorm` keeps its own private).
    pub layer_norm_eps: f64,
}

/// `BertSelfOutput`: after attention (input width `hidden_size`).
pub type BertSelfOutput = BertResidualOutput;
/// `BertOutput`: after the feed-forward expansion (input width `intermediate_size`).
pub type BertOutput = BertResidualOutput;

impl BertResidualOutput {
    pub fn new(d_in: usize, config: &BertConfig, device: &Device) -> Self {
        Self {
            dense: linear(d_in, config.hidden_size, config.initializer_range, device),
            LayerNorm: layer_norm(config, device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            layer_norm_eps: config.layer_norm_eps,
        }
    }

    pub fn forward(&self, hidden: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        let x = self.dense.forward(hidden);
        self.LayerNorm.forward(self.dropout.forward(x) + residual)
    }
}

/// `BertAttention`: self-attention (`self` in the checkpoint) and its output block.
#[derive(Module, Debug)]
pub struct BertAttention {
    pub self_attention: BertSelfAttention,
    pub output: BertSelfOutput,
}

impl BertAttention {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self { self_attention: BertSelfAttention::new(config, device), output: BertSelfOutput::new(config.hidden_size, config, device) }
    }

    /// The outputs at `queries`' positions.
    pub fn forward(&self, x: Tensor<3>, mask_bias: Option<Tensor<4>>, queries: Positions) -> Tensor<3> {
        let attended = self.self_attention.forward(x.clone(), mask_bias, queries);
        self.output.forward(attended, at_positions(x, queries))
    }
}

/// `hidden_act` applied to `x`, as HF's `ACT2FN` computes it.
pub(crate) fn activate<const D: usize>(act: Activation, x: Tensor<D>) -> Tensor<D> {
    match act {
        Activation::Gelu => gelu(x),
        Activation::GeluNew | Activation::GeluPytorchTanh => gelu_approximate(x),
        Activation::Relu => relu(x),
    }
}

/// `BertIntermediate`: the feed-forward expansion and its activation.
#[derive(Module, Debug)]
pub struct BertIntermediate {
    pub dense: Linear,
    /// `hidden_act`: no weights, a setting of the module.
    #[module(skip)]
    pub intermediate_act_fn: Activation,
}

impl BertIntermediate {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            dense: linear(config.hidden_size, config.intermediate_size, config.initializer_range, device),
            intermediate_act_fn: config.hidden_act,
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        activate(self.intermediate_act_fn, self.dense.forward(x))
    }
}

/// `BertLayer`: one post-LN Transformer block.
#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: BertIntermediate,
    pub output: BertOutput,
    /// Mixed precision (bfloat16 products, f32 LayerNorm and residuals) where a
    /// fused kernel offers it (LibTorch); not a weight.
    #[module(skip)]
    pub bf16: bool,
}

impl BertLayer {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            attention: BertAttention::new(config, device),
            intermediate: BertIntermediate::new(config, device),
            output: BertOutput::new(config.intermediate_size, config, device),
            bf16: false,
        }
    }

    /// The block's output at `queries`' positions: every position, or [CLS]
    /// alone (keys and values from every position), [batch, 1, hidden].
    pub fn forward(&self, x: Tensor<3>, mask_bias: Option<Tensor<4>>, queries: Positions) -> Tensor<3> {
        // A backend with a fused kernel for the whole block (LibTorch) takes it;
        // every other runs the reference below.
        if let Some(out) = bertfit_tch::fused_block(&self.params(&x.device()), &x, mask_bias.as_ref(), queries) {
            return out;
        }
        let attended = self.attention.forward(x, mask_bias, queries);
        let expanded = self.intermediate.forward(attended.clone());
        self.output.forward(expanded, attended)
    }

    /// The block's parameters and settings as a fused kernel takes them.
    fn params(&self, device: &Device) -> BlockParams<'_> {
        let p = |d: &Dropout| if dropout_active(d, device) { d.prob } else { 0.0 };
        let attention = &self.attention;
        BlockParams {
            query: &attention.self_attention.query,
            key: &attention.self_attention.key,
            value: &attention.self_attention.value,
            num_heads: attention.self_attention.num_heads,
            attention_output: &attention.output.dense,
            attention_norm: &attention.output.LayerNorm,
            attention_norm_eps: attention.output.layer_norm_eps,
            intermediate: &self.intermediate.dense,
            activation: self.intermediate.intermediate_act_fn,
            output: &self.output.dense,
            output_norm: &self.output.LayerNorm,
            output_norm_eps: self.output.layer_norm_eps,
            dropout: [p(&attention.self_attention.dropout), p(&attention.output.dropout), p(&self.output.dropout)],
            bf16: self.bf16,
        }
    }
}

/// `BertEncoder`: the stack of blocks (`encoder.layer.N`).
#[derive(Module, Debug)]
pub struct BertEncoder {
    pub layer: Vec<BertLayer>,
}

/// `BertPooler`: tanh(dense([CLS])).
#[derive(Module, Debug)]
pub struct BertPooler {
    pub dense: Linear,
}

impl BertPooler {
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let h = config.hidden_size;
        Self { dense: linear(h, h, config.initializer_range, device) }
    }

    /// `hidden`: [batch, len, hidden] -> [batch, hidden].
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [batch, _, width] = hidden.dims();
        let cls = hidden.slice([0..batch, 0..1, 0..width]).reshape([batch, width]);
        self.dense.forward(cls).tanh()
    }
}

/// `BertModel`: embeddings, encoder and pooler.
#[derive(Module, Debug)]
pub struct BertModel {
    pub embeddings: BertEmbeddings,
    pub encoder: BertEncoder,
    pub pooler: BertPooler,
}

impl BertModel {
    /// A randomly initialised model (HF's `_init_weights`).
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        Self {
            embeddings: BertEmbeddings::new(config, device),
            encoder: BertEncoder { layer: (0..config.num_hidden_layers).map(|_| BertLayer::new(config, device)).collect() },
            pooler: BertPooler::new(config, device),
        }
    }

    /// Runs the encoder blocks in mixed precision (bfloat16 products, f32
    /// LayerNorm, residuals and parameters) or in f32. Only LibTorch's fused
    /// block has a bfloat16 path: `Backend::has_bf16` says which backends.
    pub fn set_bf16(&mut self, on: bool) {
        for layer in &mut self.encoder.layer {
            layer.bf16 = on;
        }
    }

    pub fn num_layers(&self) -> usize {
        self.encoder.layer.len()
    }

    /// Runs the encoder; returns the hidden state of every layer.
    pub fn forward(&self, input: BertInput) -> EncoderOutput {
        self.forward_readout(input, Readout::full(self.num_layers()))
    }

    /// Runs as much of the encoder as `readout` needs (see [`Readout`]).
    pub fn forward_readout(&self, input: BertInput, readout: Readout) -> EncoderOutput {
        assert!(readout.depth <= self.num_layers(), "readout of layer {} of {}", readout.depth, self.num_layers());
        let [batch, len] = input.input_ids.dims();
        let heads = self.encoder.layer.first().map(|l| l.attention.self_attention.num_heads).unwrap_or(1);
        // Lowest f32 where the key position is padding, 0 elsewhere, as [batch,
        // heads, query, key]; no mask when the batch has no padding.
        let mask_bias = input.padded.then(|| {
            input.attention_mask.equal_elem(0).float().mul_scalar(f32::MIN).reshape([batch, 1, 1, len]).expand([batch, heads, len, len])
        });
        let mut x = self.embeddings.forward(input.input_ids, input.token_type_ids);
        if readout.depth == 0 {
            return EncoderOutput { hidden_states: vec![at_positions(x, readout.positions)] };
        }
        let mut hidden_states = Vec::with_capacity(readout.depth + 1);
        hidden_states.push(x.clone());
        for (k, block) in self.encoder.layer[..readout.depth].iter().enumerate() {
            let queries = if k + 1 == readout.depth { readout.positions } else { Positions::All };
            x = block.forward(x, mask_bias.clone(), queries);
            hidden_states.push(x.clone());
        }
        EncoderOutput { hidden_states }
    }
}
