//! The within-task MLM corpus holds train text only, never dev or test text.

use bertfit_data::mlm::{CorpusTexts, build_corpus, packed_instances};
use bertfit_data::{BertTokenizer, Dataset, Example, Provenance};

fn ex(text: &str) -> Example {
    Example::new(text, 0)
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
    // The caller passes train text only; the corpus keeps documents apart and holds none out here.
    let train: Vec<&str> = dataset.train.iter().map(|e| e.text.as_str()).collect();
    let sources = [
        CorpusTexts { source: "toy train".into(), language: "en", texts: train },
        CorpusTexts { source: "toy unlabeled".into(), language: "en", texts: vec!["plot ."] },
    ];
    let corpus = build_corpus(&sources, &tokenizer, 0.0, 0).unwrap();
    assert!(corpus.heldout.is_empty());
    assert_eq!(corpus.parts.iter().map(|p| (p.documents, p.sentences, p.tokens)).collect::<Vec<_>>(), vec![(2, 3, 8), (1, 1, 2)]);
    let sequences: Vec<Vec<u32>> = packed_instances(&corpus.train, 6, &tokenizer.special).into_iter().map(|i| i.ids).collect();
    // [CLS]=2 [SEP]=3 good=5 film=6 .=7 bad=8 plot=9
    assert_eq!(sequences, vec![vec![2, 5, 6, 7, 3], vec![2, 8, 9, 7, 3], vec![2, 5, 7, 3], vec![2, 9, 7, 3]]);
    let secret = 11;
    assert!(sequences.iter().flatten().all(|&id| id != secret && id != 10));
    // A held-out share takes whole documents out of training.
    let held = build_corpus(&sources, &tokenizer, 0.34, 0).unwrap();
    assert_eq!((held.train.len(), held.heldout.len()), (2, 1));
}
