//! Layer-wise rates see the module paths the optimizer sees: every parameter of
//! a BERT classifier gets the factor of its depth.

use bertfit_model::{BertConfig, BertForSequenceClassification, HeadConfig};
use bertfit_train::LayerwiseDecay;
use bertfit_train::optimizer::param_paths;
use burn::tensor::Device;

#[test]
fn every_parameter_gets_its_depth_factor() {
    let config = BertConfig::tiny(16); // 2 blocks
    let model = BertForSequenceClassification::new(&config, 2, HeadConfig::default(), &Device::flex());
    // The paths the optimizer sees (it names parameters by the same walk).
    let paths: Vec<String> = param_paths(&model).into_iter().map(|(path, _)| path).collect();
    let decay = LayerwiseDecay { xi: 0.5, embeddings_at_base_lr: false };
    let mut seen = std::collections::BTreeMap::new();
    for path in &paths {
        let factor = decay.factor(path, 2);
        let expected = if path.starts_with("bert.embeddings.") {
            0.25
        } else if path.starts_with("bert.encoder.layer.0.") {
            0.5
        } else {
            1.0 // top block, pooler, classifier
        };
        assert_eq!(factor, expected, "{path}");
        *seen.entry(expected.to_string()).or_insert(0) += 1;
    }
    assert!(paths.iter().any(|p| p == "bert.encoder.layer.1.output.dense.weight"), "{paths:?}");
    assert_eq!(seen.len(), 3, "{seen:?}");
}
