//! The within-task MLM corpus holds train text only, never dev or test text.

use bertfit_data::mlm::build_corpus;
use bertfit_data::{BertTokenizer, Dataset, Example, Provenance};

fn ex(text: &str) -> Example {
    Example { text: text.into(), label: 0 }
}

#[test]
fn corpus_is_train_text_only_packed_by_sentence() {
    let cache = tempfile::tempdir().unwrap();
    // This test binary is its own process: setting the variable touches no other test.
    unsafe { std::env::set_var("BERTFIT_CACHE", cache.path()) };
    let model = tempfile::tempdir().unwrap();
    std::fs::write(model.path().join("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ngood\nfilm\n.\nbad\nplot\ntest\nsecret\n").unwrap();
    let tokenizer = BertTokenizer::from_model_dir(model.path()).unwrap();
    let dataset = Dataset {
        name: "toy".into(),
        classes: vec!["neg".into(), "pos".into()],
        language: "en".into(),
        train: vec![ex("Good film. Bad plot."), ex("Good.")],
        dev: vec![ex("secret dev .")],
        test: vec![ex("secret test .")],
        provenance: Provenance {
            dataset: "toy".into(),
            files: vec![],
            split_seed: 0,
            dev_fraction: 0.1,
            test_carved: None,
            skipped_empty: 0,
            train_subset: None,
            dev_sample: None,
            test_sample: None,
        },
    };
    let corpus = build_corpus(&[&dataset], &["plot .".to_string()], &tokenizer, 6).unwrap();
    // [CLS]=2 [SEP]=3 good=5 film=6 .=7 bad=8 plot=9
    assert_eq!(corpus, vec![vec![2, 5, 6, 7, 3], vec![2, 8, 9, 7, 3], vec![2, 5, 7, 3], vec![2, 9, 7, 3]]);
    let secret = 11;
    assert!(corpus.iter().flatten().all(|&id| id != secret && id != 10));
}
