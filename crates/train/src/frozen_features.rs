//! BERT-Feat: token features of a frozen encoder, computed once and cached on
//! disk, then the biLSTM + self-attention classifier trained on them by the
//! same loop as fine-tuning.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bertfit_model::{BertFeatClassifier, BertModel};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use half::f16;

use crate::cross_entropy;
use crate::finetune::{EncodedSplit, Examples, Trainee, label_tensor};

/// Per example, the token vectors of one encoder layer (f16, row-major
/// [tokens, width]), its token count and label.
#[derive(Debug, Clone, Default)]
pub struct FeatureSplit {
    pub features: Vec<Vec<f16>>,
    pub lengths: Vec<usize>,
    pub labels: Vec<usize>,
    pub width: usize,
}

impl Examples for FeatureSplit {
    fn len(&self) -> usize {
        self.lengths.len()
    }

    fn lengths(&self) -> Vec<usize> {
        self.lengths.clone()
    }

    fn labels(&self) -> &[usize] {
        &self.labels
    }
}

impl FeatureSplit {
    /// Layer `layer` of the frozen `bert` (plain device) for every sequence of
    /// `split`, cached under `$BERTFIT_CACHE/features/` by a key of the model's
    /// fingerprint, the layer and the token ids.
    pub fn extract(
        bert: &BertModel,
        model_fingerprint: &str,
        split: &EncodedSplit,
        layer: usize,
        batch_size: usize,
        device: &Device,
    ) -> Result<Self> {
        if split.docs.iter().any(|d| d.len() != 1) {
            bail!("BERT-Feat takes one sequence per text; hierarchical truncation does not apply");
        }
        if layer > bert.num_layers() {
            bail!("bert_feat.layer = {layer}, but the encoder has layers 0..={}", bert.num_layers());
        }
        let width = bert.embeddings.word_embeddings.weight.dims()[1];
        let mut key = format!("bertfit-features-v1\0{model_fingerprint}\0{layer}\0").into_bytes();
        for doc in &split.docs {
            key.extend((doc[0].len() as u32).to_le_bytes());
            key.extend(doc[0].iter().flat_map(|id| id.to_le_bytes()));
        }
        let path = cache_dir().join(format!("{}.f16", bertfit_data::hash_bytes(&key)));
        let lengths: Vec<usize> = split.docs.iter().map(|d| d[0].len()).collect();
        let features = match read_cache(&path, &lengths, width) {
            Some(features) => features,
            None => {
                let features = compute(bert, split, layer, batch_size, device);
                write_cache(&path, &features)?;
                features
            }
        };
        Ok(Self { features, lengths, labels: split.labels.clone(), width })
    }

    /// The examples `idx` zero-padded to the longest, [batch, len, width], and their lengths.
    fn batch(&self, idx: &[usize], device: &Device) -> (Tensor<3>, Vec<usize>) {
        let len = idx.iter().map(|&i| self.lengths[i]).max().unwrap_or(0).max(1);
        let mut values = vec![0f32; idx.len() * len * self.width];
        for (row, &i) in idx.iter().enumerate() {
            let start = row * len * self.width;
            for (k, v) in self.features[i].iter().enumerate() {
                values[start + k] = v.to_f32();
            }
        }
        let lengths = idx.iter().map(|&i| self.lengths[i]).collect();
        (Tensor::from_data(TensorData::new(values, [idx.len(), len, self.width]), device), lengths)
    }
}

fn cache_dir() -> PathBuf {
    bertfit_data::assets::cache_dir().join("features")
}

fn compute(bert: &BertModel, split: &EncodedSplit, layer: usize, batch_size: usize, device: &Device) -> Vec<Vec<f16>> {
    let lengths = split.lengths();
    let mut order: Vec<usize> = (0..split.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut features = vec![Vec::new(); split.len()];
    for idx in order.chunks(batch_size.max(1)) {
        let (input, _) = split.input(idx, device);
        let hidden = bert.forward(input).hidden_states.swap_remove(layer);
        let [_, len, width] = hidden.dims();
        let values = hidden.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 hidden states");
        for (row, &i) in idx.iter().enumerate() {
            let start = row * len * width;
            features[i] = values[start..start + lengths[i] * width].iter().map(|&v| f16::from_f32(v)).collect();
        }
    }
    features
}

fn read_cache(path: &std::path::Path, lengths: &[usize], width: usize) -> Option<Vec<Vec<f16>>> {
    let bytes = std::fs::read(path).ok()?;
    let total: usize = lengths.iter().sum::<usize>() * width;
    if bytes.len() != total * 2 {
        return None;
    }
    let mut values = bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]));
    Some(lengths.iter().map(|&n| values.by_ref().take(n * width).collect()).collect())
}

fn write_cache(path: &std::path::Path, features: &[Vec<f16>]) -> Result<()> {
    let dir = path.parent().expect("cache file in a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let bytes: Vec<u8> = features.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    let tmp = path.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

impl Trainee for BertFeatClassifier {
    type Split = FeatureSplit;

    fn num_layers(&self) -> usize {
        0
    }

    fn loss(&self, _task: usize, split: &FeatureSplit, idx: &[usize], device: &Device) -> Tensor<1> {
        let (x, lengths) = split.batch(idx, device);
        let out = self.forward(x, &lengths);
        let loss = cross_entropy(out.logits, label_tensor(split, idx, device));
        if self.penalty > 0.0 { loss + bertfit_model::bert_feat::attention_penalty(out.attention).mul_scalar(self.penalty) } else { loss }
    }

    fn probabilities(&self, _task: usize, split: &FeatureSplit, idx: &[usize], device: &Device) -> Tensor<2> {
        let (x, lengths) = split.batch(idx, device);
        softmax(self.forward(x, &lengths).logits, 1)
    }
}
