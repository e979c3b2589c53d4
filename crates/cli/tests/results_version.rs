//! Pins the code's results version (`bertfit_run::identity::RESULTS_VERSION`,
//! part of every run's identity) to its numbers: a tiny deterministic run on
//! each backend built here, whose per-epoch losses, dev errors and test
//! predictions are a committed fixture tagged with the version. A change that
//! alters any of them fails this test until the version is bumped and the
//! fixture regenerated with it (`BERTFIT_UPDATE_FIXTURES=1`, which refuses to
//! rewrite the numbers of an unchanged version), so that no committed or
//! cached result of the old code is taken for the new one's.

mod common;

use std::path::Path;

use bertfit_run::identity::RESULTS_VERSION;
use common::{bertfit, tiny_model_seeded, toy_dataset};
use serde_json::{Value, json};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/results_version.json");

/// The backends this build can run on any machine.
fn backends() -> Vec<&'static str> {
    let mut backends = vec!["flex"];
    if cfg!(feature = "tch") {
        backends.push("tch");
    }
    backends
}

/// The numbers of the tiny run on `backend`: per-epoch training losses and
/// dev errors, the test error, and each test example's predicted label and
/// class probabilities (from the predictions file, as it says them).
fn tiny_run(dir: &Path, backend: &str) -> Value {
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    tiny_model_seeded(&model, Some(5));
    let dataset = toy_dataset(dir);
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        format!(
            "model = \"{}\"\n[data]\ndataset = \"{}\"\nmax_len = 16\n[training]\nepochs = 2\nbatch_size = 8\nlr = 1e-3\nseed = 3\n",
            model.display(),
            dataset.display()
        ),
    )
    .unwrap();
    let out = dir.join(format!("out-{backend}"));
    let args = ["finetune", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap(), "--backend", backend, "--quiet"];
    let run = bertfit(&args, b"");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let metrics: Value = serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["results_version"], RESULTS_VERSION, "metrics.json records the results version");
    let curve = metrics["result"]["curve"].as_array().unwrap();
    // id,gold,predicted,p_CLASS...: the predicted label and the probabilities, in file order.
    let predictions = common::gunzip(&std::fs::read(out.join("predictions/test.csv.gz")).unwrap());
    let rows: Vec<Vec<&str>> = predictions.lines().skip(1).map(|line| line.split(',').collect()).collect();
    json!({
        "train_loss": curve.iter().map(|e| e["train_loss"].clone()).collect::<Vec<_>>(),
        "dev_error": curve.iter().map(|e| e["dev_error"].clone()).collect::<Vec<_>>(),
        "test_error": metrics["result"]["test_error"],
        "test_predicted": rows.iter().map(|row| row[2]).collect::<Vec<_>>(),
        "test_probabilities": rows.iter().map(|row| row[3..].iter().map(|p| p.parse::<f64>().unwrap()).collect::<Vec<_>>()).collect::<Vec<_>>(),
    })
}

#[test]
fn the_results_version_moves_with_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let measured: serde_json::Map<String, Value> = backends().into_iter().map(|b| (b.to_string(), tiny_run(dir.path(), b))).collect();
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap_or_else(|_| "{}".into())).unwrap();
    let pinned_version = fixture["results_version"].as_u64();
    let pinned = fixture["backends"].as_object().cloned().unwrap_or_default();
    let changed: Vec<&String> = measured.keys().filter(|b| !same_numbers(&measured[*b], pinned.get(*b))).collect();
    if std::env::var_os("BERTFIT_UPDATE_FIXTURES").is_some() {
        assert!(
            pinned_version != Some(RESULTS_VERSION) || changed.is_empty(),
            "the numbers of {changed:?} changed but RESULTS_VERSION is still {RESULTS_VERSION}: bump it (crates/run/src/identity.rs) first"
        );
        let mut backends = pinned;
        backends.extend(measured);
        let text = serde_json::to_string_pretty(&json!({"results_version": RESULTS_VERSION, "backends": backends})).unwrap();
        std::fs::write(FIXTURE, text + "\n").unwrap();
        return;
    }
    assert_eq!(
        pinned_version,
        Some(RESULTS_VERSION),
        "RESULTS_VERSION is {RESULTS_VERSION} but {FIXTURE} pins another: regenerate it with BERTFIT_UPDATE_FIXTURES=1 cargo test --test results_version"
    );
    for backend in measured.keys() {
        assert!(
            same_numbers(&measured[backend], pinned.get(backend)),
            "the tiny run's numbers on {backend} changed: a change that alters results must bump RESULTS_VERSION \
             (crates/run/src/identity.rs) and regenerate {FIXTURE} with BERTFIT_UPDATE_FIXTURES=1\n measured: {}\n   pinned: {:?}",
            measured[backend],
            pinned.get(backend)
        );
    }
}

/// The pinned numbers again: the errors and the predicted labels exactly, the
/// training losses to 1e-6 relative and the test probabilities to 1e-5. The
/// last bits move with the CPU, not the code: flex's first loss moved by 1e-8
/// relative between the machine that wrote the fixture and an AVX-512 AMD
/// EPYC, and LibTorch's test probabilities (not its losses) in their last
/// digits between that AVX-512 EPYC and an AVX2 one (Zen 3), on the same code.
/// A change of what is computed moves them after two steps by far more; one
/// that only reorders the arithmetic (another kernel path) may stay within.
fn same_numbers(measured: &Value, pinned: Option<&Value>) -> bool {
    let Some(pinned) = pinned else { return false };
    let close = |key: &str, tolerance: &dyn Fn(f64) -> f64| {
        let (a, b) = (numbers(&measured[key]), numbers(&pinned[key]));
        a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= tolerance(*y))
    };
    close("train_loss", &|y| 1e-6 * y.abs().max(1e-12))
        && close("test_probabilities", &|_| 1e-5)
        && ["dev_error", "test_error", "test_predicted"].iter().all(|k| measured[*k] == pinned[*k])
}

/// The numbers of `v`, nested arrays flattened in order.
fn numbers(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(numbers).collect(),
        _ => v.as_f64().into_iter().collect(),
    }
}
