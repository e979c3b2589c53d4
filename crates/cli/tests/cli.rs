//! The `bertfit` binary on bad input and on a tiny random-weight model:
//! one-line errors, non-zero exits, no panics.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use burn::tensor::Device;
use common::{bertfit, tiny_model, toy_dataset};

/// Fails with one line on stderr that contains `needle`.
fn assert_clean_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic instead of an error: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "expected one line: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

#[test]
fn encode_outputs_one_json_line_per_text() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let model = dir.path().to_str().unwrap();
    let out = bertfit(&["encode", "--model", model, "--layers", "0,2", "--pool", "mean"], b"the movie was good\nbad plot !\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["index"], i);
        let layers = line["layers"].as_object().unwrap();
        assert_eq!(layers.keys().collect::<Vec<_>>(), vec!["0", "2"]);
        assert_eq!(layers["2"].as_array().unwrap().len(), 32);
    }
    // Mean pooling of layer 0 differs from [CLS] of layer 0.
    let out = bertfit(&["encode", "--model", model, "--layers", "0"], b"the movie was good\n");
    let cls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(cls["layers"]["0"], lines[0]["layers"]["0"]);
}

#[test]
fn bad_inputs_get_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let model = dir.path().to_str().unwrap();

    // --backend foo: rejected by the argument parser, which names the value.
    let out = bertfit(&["encode", "--model", model, "--backend", "foo"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("unknown backend \"foo\""), "{stderr}");

    assert_clean_error(&bertfit(&["encode", "--model", "/nonexistent/model"], b"hi\n"), "/nonexistent/model");

    let out = bertfit(&["encode", "--model", model], b"good\n\xff\xfe bad\n");
    assert_clean_error(&out, "line 2 of standard input is not valid UTF-8");

    let out = bertfit(&["encode", "--model", model, "--layers", "9"], b"good\n");
    assert_clean_error(&out, "layer 9 does not exist");

    let bad_act = tempfile::tempdir().unwrap();
    tiny_model(bad_act.path());
    let text = std::fs::read_to_string(bad_act.path().join("config.json")).unwrap();
    std::fs::write(bad_act.path().join("config.json"), text.replace("\"gelu\"", "\"swish\"")).unwrap();
    assert_clean_error(&bertfit(&["encode", "--model", bad_act.path().to_str().unwrap()], b"a\n"), "hidden_act");

    let truncated = tempfile::tempdir().unwrap();
    tiny_model(truncated.path());
    let weights = truncated.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 3]).unwrap();
    assert_clean_error(&bertfit(&["encode", "--model", truncated.path().to_str().unwrap()], b"a\n"), "model.safetensors");

    // The bench refuses an empty case before it fetches or measures anything.
    assert_clean_error(&bertfit(&["bench", "--model", model, "--mlm-batch", "0"], b""), "--mlm-batch must be at least 1");
    assert_clean_error(&bertfit(&["bench", "--model", model, "--seq-lens", "2"], b""), "sequence length 2");

    if !cfg!(feature = "wgpu") {
        assert_clean_error(&bertfit(&["encode", "--model", model, "--backend", "wgpu"], b"a\n"), "just build-wgpu");
    }
    if !cfg!(feature = "tch") {
        assert_clean_error(&bertfit(&["encode", "--model", model, "--backend", "tch"], b"a\n"), "just build-tch");
    }
}

/// What `auto` picks in this build.
const DEFAULT_BACKEND: &str = if cfg!(feature = "tch") { "tch" } else { "flex" };

fn run_toml(dir: &Path, model: &Path, dataset: &Path, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "model = \"{}\"\n[data]\ndataset = \"{}\"\nmax_len = 16\n[training]\nepochs = 2\nbatch_size = 8\nlr = 1e-3\nseed = 3\n{extra}",
        model.display(),
        dataset.display()
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn metrics(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn finetune_writes_a_run_and_predict_uses_its_model() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let config = run_toml(dir.path(), dir.path(), &toy_dataset(dir.path()), "");
    let out = dir.path().join("out");
    let args = ["finetune", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"];
    let run = bertfit(&args, b"");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let m = metrics(&out);
    assert_eq!(m["backend"], DEFAULT_BACKEND);
    assert_eq!(m["sizes"], serde_json::json!({"train": 60, "dev": 20, "test": 20}));
    assert_eq!(m["result"]["curve"].as_array().unwrap().len(), 2);
    assert!(m["result"]["test_error"].as_f64().unwrap() <= 1.0);
    assert!(!m["commit"].as_str().unwrap().is_empty());
    assert_eq!(std::fs::read_to_string(out.join("curve.csv")).unwrap().lines().count(), 3);
    assert!(!out.join("checkpoints").exists(), "checkpoints are removed once the run is written");
    let hf: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("model/config.json")).unwrap()).unwrap();
    assert_eq!(hf["architectures"][0], "BertForSequenceClassification");
    assert_eq!(hf["id2label"]["1"], "BAD");

    // Done already: a rerun does nothing and says so.
    let again = bertfit(&args, b"");
    assert!(again.status.success() && String::from_utf8_lossy(&again.stderr).contains("done already"));

    let predicted = bertfit(&["predict", "--model", out.join("model").to_str().unwrap()], b"the movie was good !\nbad plot .\n");
    assert!(predicted.status.success(), "{}", String::from_utf8_lossy(&predicted.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(predicted.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        let p = line["probabilities"].as_object().unwrap();
        let sum: f64 = p.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-5);
        assert!(p.contains_key(line["label"].as_str().unwrap()));
    }
}

#[test]
fn a_killed_finetune_resumes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let config = run_toml(dir.path(), dir.path(), &toy_dataset(dir.path()), "checkpoint_every = 2\n");
    let config = config.to_str().unwrap();
    let whole = dir.path().join("whole");
    assert!(bertfit(&["finetune", "--config", config, "--out", whole.to_str().unwrap(), "--quiet"], b"").status.success());

    let resumed = dir.path().join("resumed");
    let args = ["finetune", "--config", config, "--out", resumed.to_str().unwrap(), "--quiet"];
    let stopped = Command::new(env!("CARGO_BIN_EXE_bertfit")).args(args).env("BERTFIT_STOP_AFTER_STEPS", "5").output().unwrap();
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
    assert!(!resumed.join("metrics.json").exists() && resumed.join("checkpoints/LATEST").exists());
    let finished = bertfit(&args, b"");
    assert!(finished.status.success(), "{}", String::from_utf8_lossy(&finished.stderr));
    assert_eq!(untimed_curve(&resumed), untimed_curve(&whole));
}

/// The curve of a run without its timings, which differ from run to run.
fn untimed_curve(out: &Path) -> serde_json::Value {
    let mut curve = metrics(out)["result"]["curve"].clone();
    for epoch in curve.as_array_mut().unwrap() {
        let epoch = epoch.as_object_mut().unwrap();
        epoch.remove("train_seconds");
        epoch.remove("eval_seconds");
    }
    curve
}

#[test]
fn bad_run_configs_get_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let dataset = toy_dataset(dir.path());
    let run = |extra: &str| {
        let config = run_toml(dir.path(), dir.path(), &dataset, extra);
        bertfit(&["finetune", "--config", config.to_str().unwrap(), "--out", dir.path().join("o").to_str().unwrap(), "--quiet"], b"")
    };
    assert_clean_error(&run("learning_rate = 1e-3\n"), "learning_rate");
    assert_clean_error(&run("[head]\nchunk_pool = \"mean\"\n"), "head.chunk_pool");
    assert_clean_error(&run("[head]\nfeatures = { kind = \"layer\", layer = 5 }\n"), "features.layer = 5");
    let missing = bertfit(&["finetune", "--config", "/nonexistent/run.toml"], b"");
    assert_clean_error(&missing, "/nonexistent/run.toml");
    let no_model = bertfit(&["predict", "--model", dir.path().to_str().unwrap()], b"a\n");
    assert_clean_error(&no_model, "bertfit.json");
}

/// The Python with torch and transformers that `BERTFIT_PYTHON` names (`just
/// test` sets it to the project venv's). Without it the check is skipped, said
/// on stderr; under `CI`, where `just test` always sets it, that is a failure.
fn hf_python(check: &str) -> Option<String> {
    match std::env::var("BERTFIT_PYTHON") {
        Ok(python) => Some(python),
        Err(_) => {
            assert!(std::env::var_os("CI").is_none(), "BERTFIT_PYTHON is not set, and CI must run {check}");
            eprintln!("skipped: {check} (BERTFIT_PYTHON is not set; `just test` sets it)");
            None
        }
    }
}

/// The exported model against HF transformers (tools/check_hf_classifier.py),
/// when `BERTFIT_PYTHON` names a Python with torch and transformers (`just
/// test` sets it to the project venv's).
#[test]
fn exported_classifier_loads_in_hf_transformers() {
    let Some(python) = hf_python("the HF load check") else { return };
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let config = run_toml(dir.path(), dir.path(), &toy_dataset(dir.path()), "");
    let out = dir.path().join("out");
    let run = bertfit(&["finetune", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"], b"");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let texts = "the movie was good !\nbad plot .\nit is very very good\n";
    let predicted = bertfit(&["predict", "--model", out.join("model").to_str().unwrap()], texts.as_bytes());
    assert!(predicted.status.success());
    std::fs::write(dir.path().join("texts.txt"), texts).unwrap();
    std::fs::write(dir.path().join("predicted.jsonl"), &predicted.stdout).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/check_hf_classifier.py");
    let check = Command::new(python)
        .arg(script)
        .arg(out.join("model"))
        .arg(dir.path().join("texts.txt"))
        .arg(dir.path().join("predicted.jsonl"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    eprintln!("{}", String::from_utf8_lossy(&check.stdout).trim());
}

#[test]
fn multitask_and_bert_feat_runs_from_toml() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let toy = toy_dataset(dir.path());
    // A second task: the same texts under the other dataset name.
    let other = dir.path().join("toy2.toml");
    std::fs::write(&other, std::fs::read_to_string(&toy).unwrap().replace("name = \"toy\"", "name = \"toy2\"")).unwrap();
    let cache = dir.path().join("cache");
    let run = |extra: &str, out: &str| {
        let config = run_toml(dir.path(), dir.path(), &toy, extra);
        let out = dir.path().join(out);
        let result = Command::new(env!("CARGO_BIN_EXE_bertfit"))
            .args(["finetune", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"])
            .env("BERTFIT_CACHE", &cache)
            .output()
            .unwrap();
        assert!(result.status.success(), "{extra}: {}", String::from_utf8_lossy(&result.stderr));
        metrics(&out)
    };
    let multitask = run(
        &format!(
            "[multitask]\ndatasets = [\"{}\", \"{}\"]\ntraining = {{ epochs = 1, batch_size = 8, lr = 1e-3 }}\n",
            other.display(),
            toy.display()
        ),
        "mt",
    );
    let stage = &multitask["multitask"]["curve"][0]["tasks"];
    assert_eq!(stage.as_array().unwrap().len(), 2, "{multitask}");
    assert_eq!(multitask["result"]["curve"].as_array().unwrap().len(), 2);

    let feat = run("[bert_feat]\nlstm_hidden = 8\nattention_hidden = 8\nhops = 2\nmlp_hidden = 8\n", "feat");
    assert_eq!(feat["result"]["curve"].as_array().unwrap().len(), 2);
    assert_eq!(std::fs::read_dir(cache.join("features")).unwrap().count(), 3, "train, dev and test features cached");
}

/// The top of a toy experiment file: its title, and `[run]` on `model` and
/// `dataset` at 16 tokens.
fn experiment_head(title: &str, description: &str, model: &Path, dataset: &Path) -> String {
    format!(
        "reproduces = \"Table 0\"\ntitle = \"{title}\"\ndescription = \"{description}\"\n\n[run]\nmodel = \"{}\"\n\n[run.data]\ndataset = \"{}\"\nmax_len = 16\n",
        model.display(),
        dataset.display()
    )
}

/// A two-row, two-column toy experiment on the tiny model: one column whose
/// dataset is not on this machine. Rows train different numbers of steps
/// (batch 8: 16 steps; batch 4: 30 steps).
fn toy_experiment(dir: &Path, model: &Path, dataset: &Path) -> std::path::PathBuf {
    let experiments = dir.join("experiments");
    std::fs::create_dir_all(&experiments).unwrap();
    let head = experiment_head("A toy grid", "Two truncations of a toy dataset.", model, dataset);
    let text = format!(
        r#"{head}
[run.training]
epochs = 2
batch_size = 8
lr = 1e-3
checkpoint_every = 2

[rows]
name = "method"

[[rows.values]]
label = "head-only"
set = {{ "data.truncation" = {{ kind = "head_only" }} }}

[[rows.values]]
label = "hier. mean"
set = {{ "data.truncation" = {{ kind = "hierarchical", chunk_len = 8, max_chunks = 2 }}, head = {{ features = {{ kind = "last_layer" }}, chunk_pool = "mean" }}, "training.batch_size" = 4 }}

[columns]
name = "dataset"

[[columns.values]]
label = "toy"

[[columns.values]]
label = "elsewhere"
set = {{ "data.dataset" = "{missing}" }}

[paper]
"head-only" = {{ toy = 5.0 }}

[[claims]]
text = "Head-only is the best."
test = "lowest"
cell = "head-only"

[[claims]]
text = "Hier. mean beats head-only, away from the toy data."
test = "lower"
cell = "hier. mean"
than = "head-only"
except = ["toy"]

[profiles.quick]
description = "The tiny model on the toy dataset."
"#,
        missing = dir.join("missing.toml").display(),
    );
    std::fs::write(experiments.join("toy.toml"), text).unwrap();
    let missing = std::fs::read_to_string(dataset)
        .unwrap()
        .replace("name = \"toy\"", "name = \"elsewhere\"")
        .replace("train.label", "nowhere/train.label");
    std::fs::write(dir.join("missing.toml"), missing).unwrap();
    experiments
}

fn reproduce(experiments: &Path, results: &Path, extra: &[&str], stop_after: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bertfit"));
    command.args(["reproduce", "toy", "--experiments", experiments.to_str().unwrap(), "--results", results.to_str().unwrap(), "--quiet"]);
    command.args(extra);
    if let Some(n) = stop_after {
        command.env("BERTFIT_STOP_AFTER_STEPS", n);
    }
    command.output().unwrap()
}

fn run_dirs(results: &Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(results.join("toy/runs")).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    dirs
}

#[test]
fn reproduce_writes_the_table_and_a_killed_grid_loses_no_finished_run() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let experiments = toy_experiment(dir.path(), dir.path(), &toy_dataset(dir.path()));

    // Uninterrupted.
    let whole = dir.path().join("whole");
    let out = reproduce(&experiments, &whole, &[], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = std::fs::read_to_string(whole.join("toy/table.md")).unwrap();
    eprintln!("{table}");
    let backend = format!("Backend**: {DEFAULT_BACKEND}");
    for needle in [
        "| method | toy: ours | paper | elsewhere: ours | paper |",
        "head-only",
        "hier. mean",
        "missing [1]",
        "nowhere/train.label",
        &backend,
        "Seeds**: 1",
        "Head-only is the best.",
        "± is the standard deviation",
    ] {
        assert!(table.contains(needle), "{needle:?} not in\n{table}");
    }
    assert!(["supported", "cannot separate", "contradicted", "cannot judge"].iter().any(|v| table.contains(v)), "{table}");
    // A claim that leaves the toy column out is judged only elsewhere.
    let excepted = table.split("- Hier. mean beats head-only, away from the toy data.\n").nth(1).unwrap_or_default();
    let judged: Vec<&str> = excepted.lines().take_while(|l| l.starts_with("  - ")).collect();
    assert!(judged.len() == 1 && judged[0].starts_with("  - elsewhere: *not measured*"), "{judged:?}\n{table}");
    let csv = std::fs::read_to_string(whole.join("toy/table.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.lines().filter(|l| l.contains(",missing,")).count() == 2, "{csv}");
    for plot in ["bars.png", "bars.svg"] {
        assert!(std::fs::metadata(whole.join("toy").join(plot)).unwrap().len() > 1000, "{plot}");
    }
    assert!(std::fs::read_to_string(whole.join("README.md")).unwrap().contains("toy/table.md"));

    // Killed: the first run (16 steps) finishes, the second stops at step 20 of 30.
    let killed = dir.path().join("killed");
    let out = reproduce(&experiments, &killed, &[], Some("20"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let runs = run_dirs(&killed);
    assert_eq!(runs.len(), 2);
    let finished: Vec<_> = runs.iter().filter(|r| r.join("metrics.json").is_file()).collect();
    let unfinished: Vec<_> = runs.iter().filter(|r| !r.join("metrics.json").is_file()).collect();
    assert_eq!((finished.len(), unfinished.len()), (1, 1));
    assert!(unfinished[0].join("checkpoints/LATEST").is_file());
    let done_before = std::fs::read(finished[0].join("metrics.json")).unwrap();
    let modified = std::fs::metadata(finished[0].join("metrics.json")).unwrap().modified().unwrap();

    // Rerun: the finished run is kept as it was, the other resumes, and the
    // results equal the uninterrupted grid's.
    let out = reproduce(&experiments, &killed, &[], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(finished[0].join("metrics.json")).unwrap(), done_before);
    assert_eq!(std::fs::metadata(finished[0].join("metrics.json")).unwrap().modified().unwrap(), modified);
    assert_eq!(
        run_dirs(&killed).iter().map(|p| p.file_name().unwrap().to_owned()).collect::<Vec<_>>(),
        run_dirs(&whole).iter().map(|p| p.file_name().unwrap().to_owned()).collect::<Vec<_>>()
    );
    for (a, b) in run_dirs(&killed).iter().zip(run_dirs(&whole)) {
        assert_eq!(untimed_curve(a), untimed_curve(&b), "{}", a.display());
    }

    // Against a reference: a grid rendered again says it equals the reference bit for bit.
    let out = reproduce(&experiments, &killed, &["--reference", whole.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reference = std::fs::read_to_string(killed.join("toy/reference.md")).unwrap();
    assert!(reference.contains("2 cells in common: 2 equal bit for bit"), "{reference}");

    // The two grids compared: the killed-and-resumed runs equal the whole ones bit for bit.
    let (whole_toy, killed_toy) = (whole.join("toy"), killed.join("toy"));
    let compared =
        bertfit(&["compare", whole_toy.to_str().unwrap(), killed_toy.to_str().unwrap(), "--out", dir.path().to_str().unwrap()], b"");
    assert!(compared.status.success(), "{}", String::from_utf8_lossy(&compared.stderr));
    let md = String::from_utf8_lossy(&compared.stdout);
    assert!(md.contains("2 cells in common: 2 equal bit for bit"), "{md}");
    assert!(std::fs::read_to_string(dir.path().join("compare.csv")).unwrap().lines().count() == 3);
    // Bad input: one line each.
    assert_clean_error(&bertfit(&["compare", whole_toy.to_str().unwrap(), "/nonexistent"], b""), "/nonexistent: no such folder");
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let table = std::fs::read_to_string(whole_toy.join("table.md")).unwrap().replacen("# toy:", "# elsewhere:", 1);
    std::fs::write(other.join("table.md"), table).unwrap();
    std::fs::copy(whole_toy.join("table.csv"), other.join("table.csv")).unwrap();
    assert_clean_error(&bertfit(&["compare", whole_toy.to_str().unwrap(), other.to_str().unwrap()], b""), "holds experiment toy but");
    // A predictions file that does not match its run's test set is refused, naming it.
    let run = run_dirs(&killed).into_iter().next().unwrap();
    // (A plain CSV, as runs kept before predictions were compressed, is read as well.)
    let (compressed, plain) = (run.join("predictions/test.csv.gz"), run.join("predictions/test.csv"));
    let bytes = std::fs::read(&compressed).unwrap();
    let text = common::gunzip(&bytes);
    std::fs::remove_file(&compressed).unwrap();
    std::fs::write(&plain, text.lines().take(3).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    assert_clean_error(
        &bertfit(&["compare", whole_toy.to_str().unwrap(), killed_toy.to_str().unwrap()], b""),
        "predictions/test.csv: 2 predictions, but its run's split has 20 examples",
    );
    std::fs::remove_file(&plain).unwrap();
    std::fs::write(&compressed, bytes).unwrap();

    // A changed setting is another run; the old ones stay.
    let out = reproduce(&experiments, &killed, &["--set", "training.lr=2e-3"], Some("1"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(run_dirs(&killed).len(), 3);
}

/// A run folder's results that decide its numbers: the curve without timings
/// and the test predictions.
fn run_results(run: &Path) -> (serde_json::Value, String) {
    (untimed_curve(run), common::gunzip(&std::fs::read(run.join("predictions/test.csv.gz")).unwrap()))
}

/// Each finished run's `metrics.json` and its modification time.
fn finished_runs(results: &Path) -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
    run_dirs(results)
        .into_iter()
        .filter(|r| r.join("metrics.json").is_file())
        .map(|r| {
            let modified = std::fs::metadata(r.join("metrics.json")).unwrap().modified().unwrap();
            (r, modified)
        })
        .collect()
}

/// `--jobs 2` (two worker processes) gives what one run at a time gives, bit
/// for bit; killed with -9 mid-grid (its workers stop with it) and run again,
/// it keeps every finished run and trains only the rest.
#[test]
fn jobs_give_the_same_table_and_a_killed_grid_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let experiments = toy_experiment(dir.path(), dir.path(), &toy_dataset(dir.path()));
    let longer = ["--seeds", "2", "--set", "training.epochs=6"];
    let one = dir.path().join("one");
    let out = reproduce(&experiments, &one, &longer, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let two = dir.path().join("two");
    let out = reproduce(&experiments, &two, &[&longer[..], &["--jobs", "2"]].concat(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(one.join("toy/table.csv")).unwrap(), std::fs::read_to_string(two.join("toy/table.csv")).unwrap());
    assert_eq!(run_dirs(&one).len(), 4);
    for (a, b) in run_dirs(&one).iter().zip(run_dirs(&two)) {
        assert_eq!(a.file_name(), b.file_name());
        assert_eq!(run_results(a), run_results(&b), "{}", b.display());
        let log = std::fs::read_to_string(b.join("worker.log")).unwrap();
        assert!(log.contains("test error"), "a worker logs its run into the run's folder:\n{log}");
        assert!(!b.join(".lock").exists(), "a finished worker releases its lock");
    }

    // Killed with -9 once the first run is finished: the workers stop with it.
    let killed = dir.path().join("killed");
    let mut grid = Command::new(env!("CARGO_BIN_EXE_bertfit"))
        .args(["reproduce", "toy", "--experiments", experiments.to_str().unwrap(), "--results", killed.to_str().unwrap(), "--quiet"])
        .args(longer)
        .args(["--jobs", "2"])
        .spawn()
        .unwrap();
    let runs = killed.join("toy/runs");
    let start = std::time::Instant::now();
    while !runs.is_dir() || finished_runs(&killed).is_empty() {
        assert!(start.elapsed().as_secs() < 300, "no run finished");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    grid.kill().unwrap();
    grid.wait().unwrap();
    // Its workers notice within a second and stop, leaving their locks to be taken over.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let before = finished_runs(&killed);
    assert!(before.len() < 4, "the kill came after the grid finished: the test proves nothing");
    let out = reproduce(&experiments, &killed, &longer, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (run, modified) in &before {
        let now = std::fs::metadata(run.join("metrics.json")).unwrap().modified().unwrap();
        assert_eq!(now, *modified, "{} was trained again", run.display());
    }
    assert_eq!(std::fs::read_to_string(one.join("toy/table.csv")).unwrap(), std::fs::read_to_string(killed.join("toy/table.csv")).unwrap());
    for (a, b) in run_dirs(&one).iter().zip(run_dirs(&killed)) {
        assert_eq!(run_results(a), run_results(&b), "{}", b.display());
    }
}

/// Two `reproduce` started at once on one results folder: each run is trained
/// by exactly one of them, and the table is whole.
#[test]
fn two_invocations_on_one_folder_train_each_run_once() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let experiments = toy_experiment(dir.path(), dir.path(), &toy_dataset(dir.path()));
    let results = dir.path().join("shared");
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_bertfit"))
            .args(["reproduce", "toy", "--experiments", experiments.to_str().unwrap(), "--results", results.to_str().unwrap()])
            .args(["--seeds", "3", "--set", "training.epochs=4"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let trained: usize = [a, b]
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(out.status.success(), "{stderr}");
            let line = stderr.lines().find(|l| l.contains("runs to do trained here")).unwrap_or_else(|| panic!("{stderr}"));
            eprintln!("{line}");
            line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(trained, 6, "six runs, each trained once");
    let again = reproduce(&experiments, &results, &["--seeds", "3", "--set", "training.epochs=4"], None);
    assert!(again.status.success());
    let csv = std::fs::read_to_string(results.join("toy/table.csv")).unwrap();
    assert_eq!(csv.lines().filter(|l| l.contains(",done,")).count(), 2, "{csv}");
}

/// A bundle of a toy grid, unpacked and run elsewhere (another cache, data
/// root and catalogue, nothing of this machine's), gives the table the grid
/// gives here, bit for bit, and carries only what the grid reads.
#[test]
fn a_bundle_runs_the_grid_elsewhere_to_the_same_table() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, data, catalogue) = (dir.path().join("cache"), dir.path().join("data"), dir.path().join("catalogue"));
    // Here: the tiny model as a hub model in the cache, the toy dataset in a
    // catalogue folder with its files under the data root.
    let model = cache.join("hub/tiny--bert");
    std::fs::create_dir_all(&model).unwrap();
    tiny_model(&model);
    std::fs::write(model.join(".complete"), "tiny/bert").unwrap();
    let toy = toy_dataset(dir.path());
    std::fs::create_dir_all(data.join("toy")).unwrap();
    for file in ["train.label", "test.label"] {
        std::fs::copy(dir.path().join(file), data.join("toy").join(file)).unwrap();
    }
    std::fs::create_dir_all(&catalogue).unwrap();
    let entry = std::fs::read_to_string(&toy).unwrap().replace(&format!("{}/", dir.path().display()), "toy/");
    std::fs::write(catalogue.join("toy.toml"), entry).unwrap();
    let experiments = dir.path().join("experiments");
    std::fs::create_dir_all(&experiments).unwrap();
    let text = std::fs::read_to_string(toy_experiment(dir.path(), dir.path(), &toy).join("toy.toml")).unwrap();
    let text = text
        .replace(&format!("model = \"{}\"", dir.path().display()), "model = \"hf:tiny/bert\"")
        .replace(&format!("dataset = \"{}\"", toy.display()), "dataset = \"toy\"");
    std::fs::write(experiments.join("toy.toml"), text).unwrap();
    let here = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_bertfit"))
            .args(args)
            .env("BERTFIT_CACHE", &cache)
            .env("BERTFIT_DATA_ROOT", &data)
            .env("BERTFIT_DATASETS", &catalogue)
            .output()
            .unwrap()
    };
    let direct = dir.path().join("direct");
    let exp = experiments.to_str().unwrap();
    let out = here(&["reproduce", "toy", "--experiments", exp, "--results", direct.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bundle = dir.path().join("bundle");
    let args = ["bundle", "toy", "--profile", "quick", "--experiments", exp, "--out", bundle.to_str().unwrap()];
    let out = here(&[&args[..], &["--backend", DEFAULT_BACKEND, "--jobs", "2"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = Command::new("tar").arg("-tJf").arg(bundle.join("payload.tar.xz")).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).to_string();
    for needed in [
        "cache/hub/tiny--bert/model.safetensors",
        "cache/hub/tiny--bert/.complete",
        "data/toy/train.label",
        "datasets/toy.toml",
        "experiments/toy.toml",
    ] {
        assert!(listing.lines().any(|l| l == needed), "{needed} not in the bundle:\n{listing}");
    }
    assert!(!listing.contains("missing"), "the cell whose dataset is not here carries nothing:\n{listing}");

    // There: nothing of this machine's cache, data or catalogue.
    let (work, there, archives) = (dir.path().join("work"), dir.path().join("there"), dir.path().join("out"));
    std::fs::create_dir_all(&archives).unwrap();
    let out = Command::new("bash")
        .arg(bundle.join("run.sh"))
        .arg(&there)
        .arg("--quiet")
        .env_remove("BERTFIT_CACHE")
        .env_remove("BERTFIT_DATA_ROOT")
        .env_remove("BERTFIT_DATASETS")
        .env("WORK", &work)
        .env("OUT", &archives)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(direct.join("toy/table.csv")).unwrap(),
        std::fs::read_to_string(there.join("toy/table.csv")).unwrap()
    );
    for (a, b) in run_dirs(&direct).iter().zip(run_dirs(&there)) {
        assert_eq!(a.file_name(), b.file_name(), "the same run identities there");
        assert_eq!(run_results(a), run_results(&b));
    }
    assert!(archives.join("toy-quick-results.tar.gz").is_file());
}

#[test]
fn reproduce_refuses_bad_settings_before_any_training() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let experiments = toy_experiment(dir.path(), dir.path(), &toy_dataset(dir.path()));
    let results = dir.path().join("results");
    let out = reproduce(&experiments, &results, &["--set", "training.lrr=3e-5"], None);
    assert_clean_error(&out, "--set training.lrr=3e-5");
    let out = reproduce(&experiments, &results, &["--set", "training.layerwise.xi=1.5"], None);
    assert_clean_error(&out, "training.layerwise.xi: must be in (0, 1]");
    let out = reproduce(&experiments, &results, &["--set", "head.features={ kind = \"layer\", layer = 7 }"], None);
    assert_clean_error(&out, "head.features");
    let out = reproduce(
        &experiments,
        &results,
        &["--set", "data.max_len=16", "--set", "data.truncation={ kind = \"head_tail\", head = 20 }"],
        None,
    );
    assert_clean_error(&out, "data.truncation.head");
    assert!(!results.join("toy/runs").exists(), "nothing trained");
    let text = std::fs::read_to_string(experiments.join("toy.toml")).unwrap();
    std::fs::write(experiments.join("toy.toml"), text.replace("lr = 1e-3", "lr = 1e-3\nlearning_rate = 1")).unwrap();
    let out = reproduce(&experiments, &results, &[], None);
    let line =
        std::fs::read_to_string(experiments.join("toy.toml")).unwrap().lines().position(|l| l.starts_with("learning_rate")).unwrap() + 1;
    assert_clean_error(&out, &format!("toy.toml:{line}:"));
    let unknown = bertfit(&["reproduce", "no-such-thing"], b"");
    assert_clean_error(&unknown, "truncation");
    let no_seeds = bertfit(&["reproduce", "truncation", "--seeds", "0"], b"");
    assert_clean_error(&no_seeds, "--seeds 0: a cell needs at least one seed");
    let nowhere = bertfit(&["reproduce", "truncation", "--experiments", "/nonexistent"], b"");
    assert_clean_error(&nowhere, "--experiments /nonexistent: no such folder");
}

/// `--plan` counts a further pre-training stage once, for every cell and seed
/// that starts from it (two checkpoints of one stage here), none for a cell
/// that starts from step 0, and nothing to train once the stage cache holds it.
#[test]
fn plan_counts_each_pretraining_stage_once() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let dataset = toy_dataset(dir.path());
    let training = "steps = 8, warmup_steps = 1, batch_size = 4, max_len = 16, lr = 1e-3, checkpoint_every = 4, keep_checkpoints = true, heldout_share = 0.1";
    let experiments = dir.path().join("experiments");
    std::fs::create_dir_all(&experiments).unwrap();
    let head = experiment_head("Pre-training steps", "Fine-tuning after 0, 4 and 8 steps of one stage.", dir.path(), &dataset);
    let text = format!(
        r#"{head}
[run.training]
epochs = 1
batch_size = 8

[run.pretrain]
corpus = {{ kind = "within_task" }}
training = {{ {training} }}

[rows]
name = "steps"

[[rows.values]]
label = "0"
set = {{ "pretrain.from_step" = 0 }}

[[rows.values]]
label = "4"
set = {{ "pretrain.from_step" = 4 }}

[[rows.values]]
label = "8"

[columns]
name = "dataset"

[[columns.values]]
label = "toy"

[profiles.quick]
description = "The tiny model on the toy dataset."
"#
    );
    std::fs::write(experiments.join("toy.toml"), text).unwrap();
    let cache = dir.path().join("cache");
    let plan = || {
        let out = Command::new(env!("CARGO_BIN_EXE_bertfit"))
            .args(["reproduce", "toy", "--plan", "--seeds", "2", "--experiments", experiments.to_str().unwrap()])
            .args(["--results", dir.path().join("results").to_str().unwrap()])
            .env("BERTFIT_CACHE", &cache)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let stage_rows = |text: &str| text.lines().filter(|l| l.starts_with("| 1 | ")).map(str::to_string).collect::<Vec<_>>();

    let before = plan();
    assert_eq!(before.matches("after MLM stage 1").count(), 2, "{before}");
    assert!(!before.contains("MLM stage 2"), "{before}");
    assert_eq!(stage_rows(&before), vec![format!("| 1 | {} | 8 x 4 x 16 | 0.5K | 2 | no |", dataset.display())], "{before}");
    assert!(before.contains("(2 seeds): ") && before.contains(", 0.5K MLM tokens still to train"), "{before}");

    // The same stage trained by `bertfit pretrain` into the cache.
    let config = dir.path().join("pretrain.toml");
    let settings = training.replace(", ", "\n");
    std::fs::write(
        &config,
        format!("model = \"{}\"\ndatasets = [\"{}\"]\n[training]\n{settings}\n", dir.path().display(), dataset.display()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bertfit"))
        .args(["pretrain", "--config", config.to_str().unwrap(), "--out", dir.path().join("stage").to_str().unwrap(), "--quiet"])
        .env("BERTFIT_CACHE", &cache)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = plan();
    assert_eq!(stage_rows(&after), vec![format!("| 1 | {} | 8 x 4 x 16 | 0.5K | 2 | yes: not trained again |", dataset.display())]);
    assert!(after.contains(", 0.0K MLM tokens still to train"), "{after}");
}

#[test]
fn pretrain_writes_a_model_that_finetune_loads_and_resumes_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let dataset = toy_dataset(dir.path());
    let config = dir.path().join("pretrain.toml");
    std::fs::write(
        &config,
        format!(
            "model = \"{}\"\ndatasets = [\"{}\"]\n[training]\nsteps = 8\nwarmup_steps = 1\nbatch_size = 4\nmax_len = 16\nlr = 1e-3\ncheckpoint_every = 4\nkeep_checkpoints = true\nheldout_share = 0.1\n",
            dir.path().display(),
            dataset.display()
        ),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let pretrain_with_cache = |out: &Path, stop: Option<&str>, cache: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bertfit"));
        command
            .args(["pretrain", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"])
            .env("BERTFIT_CACHE", cache);
        if let Some(n) = stop {
            command.env("BERTFIT_STOP_AFTER_STEPS", n);
        }
        command.output().unwrap()
    };
    let pretrain = |out: &Path, stop: Option<&str>| pretrain_with_cache(out, stop, &cache);
    let whole = dir.path().join("whole");
    let out = pretrain(&whole, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m = metrics(&whole);
    assert_eq!(m["head_initialized"], true, "the tiny model has no MLM head");
    let steps: Vec<u64> = m["result"]["curve"].as_array().unwrap().iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![0, 4, 8]);
    assert_eq!(m["corpus"][0]["source"], "toy train");
    let hf: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(whole.join("config.json")).unwrap()).unwrap();
    assert_eq!(hf["architectures"][0], "BertForMaskedLM");
    assert!(whole.join("vocab.txt").is_file() && whole.join("snapshots/step-4/model.safetensors").is_file());
    assert!(!whole.join("checkpoints").exists());

    // The same settings again: the cached stage is copied, not trained again
    // (a stop after one step would leave it unfinished otherwise).
    let again = dir.path().join("again");
    assert!(pretrain(&again, Some("1")).status.success());
    let read = |p: &Path| std::fs::read(p).unwrap();
    assert_eq!(read(&again.join("metrics.json")), read(&whole.join("metrics.json")));
    assert_eq!(read(&again.join("model.safetensors")), read(&whole.join("model.safetensors")));

    // Killed after 3 steps (in a cache of its own) and resumed.
    let resumed = dir.path().join("resumed");
    let fresh_cache = dir.path().join("fresh-cache");
    assert!(pretrain_with_cache(&resumed, Some("3"), &fresh_cache).status.success());
    assert!(!resumed.join("metrics.json").exists());
    assert!(pretrain_with_cache(&resumed, None, &fresh_cache).status.success());
    assert_same_curve(&resumed, &whole);

    // Fine-tuning starts from it like from any HF directory.
    let run = run_toml(dir.path(), &whole, &dataset, "");
    let out = Command::new(env!("CARGO_BIN_EXE_bertfit"))
        .args(["finetune", "--config", run.to_str().unwrap(), "--out", dir.path().join("ft").to_str().unwrap(), "--quiet"])
        .env("BERTFIT_CACHE", &cache)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    check_mlm_in_hf_transformers(&whole, dir.path());
}

/// The same held-out and training losses; LibTorch's CPU kernels may sum in
/// another order in another process, so the last bits of a logged loss may differ.
fn assert_same_curve(resumed: &Path, whole: &Path) {
    let curve = |p: &Path| {
        let m = metrics(p);
        m["result"]["curve"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| [r["heldout_loss"].as_f64(), r["train_loss"].as_f64()])
            .collect::<Vec<_>>()
    };
    let (a, b) = (curve(resumed), curve(whole));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        match (x, y) {
            (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-6 * x.abs(), "{a:?} vs {b:?}"),
            _ => assert_eq!(x, y),
        }
    }
}

/// HF transformers' BertForMaskedLM on the pre-trained `whole` gives our logits
/// (when BERTFIT_PYTHON names a Python with it).
fn check_mlm_in_hf_transformers(whole: &Path, dir: &Path) {
    let Some(python) = hf_python("the HF BertForMaskedLM check") else { return };
    let config = bertfit_model::BertConfig::from_file(&whole.join("config.json")).unwrap();
    let device = Device::flex();
    let (model, _) = bertfit_model::BertForMaskedLM::from_pretrained(whole, &config, false, &device).unwrap();
    let ids: Vec<i64> = vec![2, 5, 6, 4, 8, 3, 2, 9, 4, 3, 0, 0];
    let mask: Vec<i64> = ids.iter().enumerate().map(|(i, _)| i64::from(i < 10)).collect();
    let input = bertfit_model::BertInput::from_ids(ids.clone(), mask.clone(), [2, 6], &device);
    let logits = model.full_logits(input).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let fixture = serde_json::json!({"input_ids": ids, "attention_mask": mask, "shape": [2, 6], "masked": [3, 8], "logits": logits});
    std::fs::write(dir.join("mlm.json"), fixture.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/check_hf_mlm.py");
    let check = Command::new(python).arg(script).arg(whole).arg(dir.join("mlm.json")).output().unwrap();
    assert!(check.status.success(), "{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    eprintln!("{}", String::from_utf8_lossy(&check.stdout).trim());
}
