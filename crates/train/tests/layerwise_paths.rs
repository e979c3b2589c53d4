//! Layer-wise rates see the module paths the optimizer sees: every parameter of
//! a BERT classifier gets the factor of its depth.

use bertfit_model::{BertConfig, BertForSequenceClassification, HeadConfig};
use bertfit_train::LayerwiseDecay;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

#[derive(Default)]
struct Paths {
    stack: Vec<String>,
    paths: Vec<String>,
}

impl ModuleVisitor for Paths {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
        self.paths.push(self.stack.join("."));
    }
}

#[test]
fn every_parameter_gets_its_depth_factor() {
    let config = BertConfig::tiny(16); // 2 blocks
    let model = BertForSequenceClassification::new(&config, 2, HeadConfig::default(), &Device::flex());
    let mut visitor = Paths::default();
    model.visit(&mut visitor);
    let decay = LayerwiseDecay { xi: 0.5, embeddings_at_base_lr: false };
    let mut seen = std::collections::BTreeMap::new();
    for path in &visitor.paths {
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
    assert!(visitor.paths.iter().any(|p| p == "bert.encoder.layer.1.output.dense.weight"), "{:?}", visitor.paths);
    assert_eq!(seen.len(), 3, "{seen:?}");
}
