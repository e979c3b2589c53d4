//! AdamW as HF transformers / `torch.optim.AdamW` run it for BERT fine-tuning,
//! and the original code's BERTAdam for comparison.
//!
//! * `AdamW` (default): bias-corrected moments, eps 1e-6, decoupled weight
//!   decay 0.01 on every parameter but biases and LayerNorm, gradients clipped
//!   to a global L2 norm of 1.0 (`torch.nn.utils.clip_grad_norm_`).
//! * `Bert4doc`: `BERTAdam` of pytorch-pretrained-bert, which the paper's code
//!   used: no bias correction, each parameter's gradient clipped on its own.
//!
//! On a GPU (LibTorch CUDA) AdamW takes its step as `torch.optim.AdamW(fused=True)`
//! does, one kernel per parameter group, and the clipping norm in one foreach
//! call ([`AdamW::fused`]); elsewhere one parameter at a time.

use std::collections::HashMap;

use bertfit_tch::{AdamWGroupStep, AdamWStep, Applied, DeviceScalar, FusedAdamW, UpdateInputs};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// torch AdamW with bias correction and global-norm clipping.
    #[default]
    Adamw,
    /// The original code's BERTAdam: no bias correction, per-parameter clipping.
    Bert4doc,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Clip gradients to this L2 norm (global for AdamW, per parameter for
    /// bert4doc); `None` turns clipping off.
    pub max_grad_norm: Option<f64>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self { kind: OptimizerKind::Adamw, beta1: 0.9, beta2: 0.999, eps: 1e-6, weight_decay: 0.01, max_grad_norm: Some(1.0) }
    }
}

impl OptimizerConfig {
    /// Settings out of range, by key under the optimizer's table.
    pub fn check(&self) -> Result<(), bertfit_data::settings::InvalidSetting> {
        use bertfit_data::settings::InvalidSetting;
        for (key, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(InvalidSetting::new(key, format!("must be in [0, 1), not {beta}")));
            }
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(InvalidSetting::new("eps", format!("must be positive, not {}", self.eps)));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(InvalidSetting::new("weight_decay", format!("must be zero or positive, not {}", self.weight_decay)));
        }
        if let Some(max) = self.max_grad_norm
            && !(max > 0.0 && max.is_finite())
        {
            return Err(InvalidSetting::new("max_grad_norm", format!("must be positive (or left out), not {max}")));
        }
        Ok(())
    }
}

/// Whether a parameter (by its module path) gets weight decay: not biases, not LayerNorm.
pub fn decays(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    !(last == "bias" || last == "beta" || last == "gamma" || path.contains("LayerNorm"))
}

/// First and second moments of one parameter, flattened.
#[derive(Clone)]
struct Moments {
    m: Tensor<1>,
    v: Tensor<1>,
}

pub struct AdamW {
    pub config: OptimizerConfig,
    /// Steps taken so far (bias correction uses step + 1 on the next one).
    pub step: u64,
    /// Whether AdamW takes its step over whole parameter groups in one call
    /// each (`torch.optim.AdamW(fused=True)`, and the clipping norm by
    /// `_foreach_norm`) where LibTorch holds the parameters. `None` (the
    /// default): on a CUDA device, where one launch per tensor costs more
    /// than the arithmetic; on the CPU the per-tensor update, whose results
    /// the committed runs hold bit for bit.
    pub fused: Option<bool>,
    moments: HashMap<ParamId, Moments>,
}

/// Sum of squared gradient entries, over all parameters, on the device.
struct SquaredGradSum<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredGradSum<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let sq = bertfit_tch::squared_norm(&grad).unwrap_or_else(|| grad.square().sum());
            self.total = Some(match self.total.take() {
                Some(t) => t + sq,
                None => sq,
            });
        }
    }
}

/// The gradients gathered for one foreach norm; `all` turns false if one of
/// them is not LibTorch's.
struct ForeachGradNorm<'a> {
    grads: &'a GradientsParams,
    norm: bertfit_tch::ForeachNorm,
    all: bool,
}

impl ModuleVisitor for ForeachGradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            self.all &= self.norm.push(&grad);
        }
    }
}

/// Whether the first parameter with a gradient lives on a CUDA device.
struct OnCuda<'a> {
    grads: &'a GradientsParams,
    found: Option<bool>,
}

impl ModuleVisitor for OnCuda<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.found.is_none() && self.grads.get::<D>(param.id).is_some() {
            self.found = Some(bertfit_tch::is_cuda(&param.val()));
        }
    }
}

/// The global gradient norm of a step, before clipping.
pub enum GradNorm {
    /// Read back already (the per-tensor update scales on the host).
    Known(f64),
    /// Still on the device (the fused update); reading it waits for the step.
    OnDevice(DeviceScalar),
}

impl GradNorm {
    pub fn value(&self) -> f64 {
        match self {
            Self::Known(v) => *v,
            Self::OnDevice(d) => d.value(),
        }
    }
}

/// AdamW's global-norm clipping of one step.
enum Clip<'a> {
    Off,
    /// The factor min(max / (norm + 1e-6), 1), computed on the host when a
    /// parameter updated one at a time needs it.
    Global {
        norm: &'a GradNorm,
        max: f64,
        scale: std::cell::OnceCell<f64>,
    },
}

impl Clip<'_> {
    fn scale(&self) -> f64 {
        match self {
            Self::Off => 1.0,
            Self::Global { norm, max, scale } => *scale.get_or_init(|| (max / (norm.value() + 1e-6)).min(1.0)),
        }
    }
}

struct Update<'a> {
    optim: &'a mut AdamW,
    /// The fused step's groups, when AdamW runs fused: each parameter is
    /// gathered here and updated in place after the pass.
    fused: Option<FusedAdamW>,
    grads: &'a mut GradientsParams,
    lr: f64,
    lr_factor: &'a dyn Fn(&str) -> f64,
    /// Global clipping (AdamW).
    clip: &'a Clip<'a>,
    path: Vec<String>,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let path = self.path.join(".");
        let lr = self.lr * (self.lr_factor)(&path);
        let require_grad = tensor.is_require_grad();
        let shape = tensor.shape();
        let numel = shape.num_elements();
        let p = tensor.inner().reshape([numel]);
        let g = grad.inner().reshape([numel]);
        let state = self.optim.moments.remove(&id).unwrap_or_else(|| Moments { m: g.zeros_like(), v: g.zeros_like() });
        let weight_decay = if decays(&path) { self.optim.config.weight_decay } else { 0.0 };
        let (updated, moments) = self.update(UpdateInputs { param: p, grad: g, m: state.m, v: state.v }, lr, weight_decay);
        self.optim.moments.insert(id, moments);
        let tensor = Tensor::from_inner(updated.reshape(shape));
        Param::from_mapped_value(id, if require_grad { tensor.require_grad() } else { tensor }, mapper)
    }
}

impl Update<'_> {
    /// One parameter's update by the first path that takes it: AdamW fused
    /// over its group after the pass (LibTorch, when this step fuses), AdamW
    /// written in place now (LibTorch; torch's ops, where burn's would
    /// allocate a new buffer at each of its steps), else burn's ops (every
    /// backend, and BERTAdam always): the updated parameter and its moments.
    fn update(&mut self, mut inputs: UpdateInputs, lr: f64, weight_decay: f64) -> (Tensor<1>, Moments) {
        let c = &self.optim.config;
        let adamw = c.kind == OptimizerKind::Adamw;
        if adamw && let Some(fused) = self.fused.as_mut() {
            match fused.push(inputs, lr, weight_decay) {
                Applied::Done { param, m, v } => return (param, Moments { m, v }),
                Applied::Declined(declined) => inputs = declined,
            }
        }
        // Bias corrections of step t = step + 1 (AdamW only); the host's
        // clipping factor, which only an update one parameter at a time reads
        // (fused, the factor is applied on the device after the pass).
        let t = (self.optim.step + 1) as i32;
        let step = AdamWStep {
            lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay,
            bias_correction1: 1.0 - c.beta1.powi(t),
            bias_correction2: 1.0 - c.beta2.powi(t),
            grad_scale: self.clip.scale(),
        };
        if adamw {
            match bertfit_tch::adamw_in_place(inputs, &step) {
                Applied::Done { param, m, v } => return (param, Moments { m, v }),
                Applied::Declined(declined) => inputs = declined,
            }
        }
        reference_update(c, inputs, &step)
    }
}

/// One parameter's update with burn's ops: the new parameter and moments.
fn reference_update(c: &OptimizerConfig, inputs: UpdateInputs, s: &AdamWStep) -> (Tensor<1>, Moments) {
    let UpdateInputs { param: p, grad: mut g, m, v } = inputs;
    let state = Moments { m, v };
    let (lr, wd) = (s.lr, s.weight_decay);
    match c.kind {
        OptimizerKind::Adamw => {
            if s.grad_scale < 1.0 {
                g = g.mul_scalar(s.grad_scale);
            }
        }
        OptimizerKind::Bert4doc => {
            if let Some(max) = c.max_grad_norm {
                // torch.nn.utils.clip_grad_norm_(p, max) per parameter.
                let norm: f64 = g.clone().square().sum().sqrt().into_scalar::<f32>() as f64;
                let scale = max / (norm + 1e-6);
                if scale < 1.0 {
                    g = g.mul_scalar(scale);
                }
            }
        }
    }
    // torch: exp_avg.lerp_(grad, 1 - beta1), i.e. m + (1 - beta1) (g - m).
    let m = state.m.clone() + (g.clone() - state.m).mul_scalar(1.0 - c.beta1);
    let v = state.v.mul_scalar(c.beta2) + g.square().mul_scalar(1.0 - c.beta2);
    let updated = match c.kind {
        OptimizerKind::Adamw => {
            // torch.optim.AdamW: decay, then p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps).
            let denom = v.clone().sqrt().div_scalar(s.bias_correction2.sqrt()).add_scalar(c.eps);
            let decayed = if wd > 0.0 { p.mul_scalar(1.0 - lr * wd) } else { p };
            decayed - (m.clone() / denom).mul_scalar(lr / s.bias_correction1)
        }
        OptimizerKind::Bert4doc => {
            // BERTAdam: update = m / (sqrt(v) + eps) + wd * p; p -= lr * update.
            let mut update = m.clone() / v.clone().sqrt().add_scalar(c.eps);
            if wd > 0.0 {
                update = update + p.clone().mul_scalar(wd);
            }
            p - update.mul_scalar(lr)
        }
    };
    (updated, Moments { m, v })
}

/// Module path of every float parameter, in visiting order.
struct ParamPaths {
    path: Vec<String>,
    found: Vec<(String, ParamId)>,
}

impl ModuleVisitor for ParamPaths {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.found.push((self.path.join("."), param.id));
    }
}

/// `(path, id, number of values)` of every float parameter of `module`.
pub fn param_sizes<M: Module>(module: &M) -> Vec<(String, ParamId, usize)> {
    struct Sizes {
        path: Vec<String>,
        found: Vec<(String, ParamId, usize)>,
    }
    impl ModuleVisitor for Sizes {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.found.push((self.path.join("."), param.id, param.lazy_shape().num_elements()));
        }
    }
    let mut visitor = Sizes { path: Vec::new(), found: Vec::new() };
    module.visit(&mut visitor);
    visitor.found
}

/// `(path, id)` of every float parameter of `module`.
pub fn param_paths<M: Module>(module: &M) -> Vec<(String, ParamId)> {
    let mut visitor = ParamPaths { path: Vec::new(), found: Vec::new() };
    module.visit(&mut visitor);
    visitor.found
}

/// The optimizer's state in a form that outlives the process: parameter ids
/// are per process, so moments are keyed by module path.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState {
    pub step: u64,
    /// `(path, first moment, second moment)`, flattened.
    pub moments: Vec<(String, Vec<f32>, Vec<f32>)>,
}

impl AdamW {
    /// The moments of `module`'s parameters, by path (for checkpoints).
    pub fn state<M: Module>(&self, module: &M) -> OptimizerState {
        let values = |t: &Tensor<1>| t.clone().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 moments");
        let moments = param_paths(module)
            .into_iter()
            .filter_map(|(path, id)| self.moments.get(&id).map(|s| (path, values(&s.m), values(&s.v))))
            .collect();
        OptimizerState { step: self.step, moments }
    }

    /// Restores a state saved by [`AdamW::state`] for `module` (same structure).
    pub fn load_state<M: Module>(&mut self, module: &M, state: OptimizerState, device: &burn::tensor::Device) -> anyhow::Result<()> {
        let ids: HashMap<String, (ParamId, usize)> = param_sizes(module).into_iter().map(|(path, id, n)| (path, (id, n))).collect();
        // Moments live without autodiff, as the gradients they are made of.
        let device = &device.clone().inner();
        self.moments.clear();
        for (path, m, v) in state.moments {
            let Some(&(id, numel)) = ids.get(&path) else {
                anyhow::bail!("optimizer state has moments for {path:?}, which the model does not have");
            };
            if m.len() != numel || v.len() != numel {
                anyhow::bail!(
                    "optimizer state for {path:?} has {} and {} values where the parameter has {numel}: the checkpoint is corrupt or from another model",
                    m.len(),
                    v.len()
                );
            }
            let tensor = |x: Vec<f32>| {
                let n = x.len();
                Tensor::<1>::from_data(burn::tensor::TensorData::new(x, [n]), device)
            };
            self.moments.insert(id, Moments { m: tensor(m), v: tensor(v) });
        }
        self.step = state.step;
        Ok(())
    }

    pub fn new(config: OptimizerConfig) -> Self {
        Self { config, step: 0, fused: None, moments: HashMap::new() }
    }

    /// Global L2 norm of the gradients (before clipping).
    pub fn grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
        let mut visitor = SquaredGradSum { grads, total: None };
        module.visit(&mut visitor);
        visitor.total.map(|t| t.sqrt().into_scalar::<f32>() as f64).unwrap_or(0.0)
    }

    /// Whether this step runs fused (see [`AdamW::fused`]).
    fn runs_fused<M: Module>(&self, module: &M, grads: &GradientsParams) -> bool {
        self.config.kind == OptimizerKind::Adamw
            && self.fused.unwrap_or_else(|| {
                let mut visitor = OnCuda { grads, found: None };
                module.visit(&mut visitor);
                visitor.found.unwrap_or(false)
            })
    }

    /// The global L2 norm in one foreach call, left on the device; `None`
    /// unless LibTorch holds every gradient.
    fn foreach_grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> Option<DeviceScalar> {
        let mut visitor = ForeachGradNorm { grads, norm: Default::default(), all: true };
        module.visit(&mut visitor);
        visitor.all.then(|| visitor.norm.norm().unwrap_or_else(|e| panic!("LibTorch's foreach gradient norm failed: {e}")))
    }

    /// One optimizer step at learning rate `lr`, scaled per parameter by
    /// `lr_factor(path)` (layer-wise decreasing lr). Returns the updated module
    /// and the gradient norm before clipping. Fused, the norm and the clipping
    /// coefficient stay on the device: the step never waits for them.
    pub fn step<M: Module>(&mut self, module: M, mut grads: GradientsParams, lr: f64, lr_factor: &dyn Fn(&str) -> f64) -> (M, GradNorm) {
        let fused = self.runs_fused(&module, &grads);
        let norm = match fused.then(|| Self::foreach_grad_norm(&module, &grads)).flatten() {
            Some(on_device) => GradNorm::OnDevice(on_device),
            None => GradNorm::Known(Self::grad_norm(&module, &grads)),
        };
        let clip = match (self.config.kind, self.config.max_grad_norm) {
            (OptimizerKind::Adamw, Some(max)) => Clip::Global { norm: &norm, max, scale: std::cell::OnceCell::new() },
            _ => Clip::Off,
        };
        let fused = fused.then(FusedAdamW::default);
        let mut update = Update { optim: self, fused, grads: &mut grads, lr, lr_factor, clip: &clip, path: Vec::new() };
        let module = module.map(&mut update);
        let pending = update.fused.take();
        if let Some(fused) = pending {
            let c = &self.config;
            let (grad_scale, on_device) = match &clip {
                Clip::Global { norm: GradNorm::OnDevice(norm), max, .. } => (1.0, Some(norm.clip_coefficient(*max))),
                other => (other.scale(), None),
            };
            let step = AdamWGroupStep { beta1: c.beta1, beta2: c.beta2, eps: c.eps, step: self.step + 1, grad_scale };
            fused.step(&step, on_device.as_ref()).unwrap_or_else(|e| panic!("LibTorch's fused AdamW step failed: {e}"));
        }
        self.step += 1;
        (module, norm)
    }
}
