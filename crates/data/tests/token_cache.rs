//! The token cache: keyed by texts, tokenizer and settings; a change of any
//! makes a new entry; a damaged entry is recomputed, never trusted.

use bertfit_data::{BertTokenizer, tokenize_cached};

fn tokenizer(dir: &std::path::Path, extra: &str) -> BertTokenizer {
    let vocab = format!("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nfilm\nwas\ngood\n##s\n{extra}\n");
    std::fs::write(dir.join("vocab.txt"), vocab).unwrap();
    BertTokenizer::from_model_dir(dir).unwrap()
}

fn entries(cache: &std::path::Path) -> usize {
    std::fs::read_dir(cache.join("tokens")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn cache_hits_and_invalidates() {
    let cache = tempfile::tempdir().unwrap();
    // This test binary is its own process: setting the variable touches no other test.
    unsafe { std::env::set_var("BERTFIT_CACHE", cache.path()) };
    let model = tempfile::tempdir().unwrap();
    let tok = tokenizer(model.path(), "bad");
    let texts = vec!["The film was good".to_string(), "films".to_string()];
    let first = tokenize_cached(&tok, &texts).unwrap();
    assert_eq!(first, vec![vec![5, 6, 7, 8], vec![6, 9]]);
    assert_eq!(entries(cache.path()), 1);
    assert_eq!(tokenize_cached(&tok, &texts).unwrap(), first);
    assert_eq!(entries(cache.path()), 1, "a hit writes nothing");

    let changed = vec!["The film was bad".to_string()];
    assert_eq!(tokenize_cached(&tok, &changed).unwrap(), vec![vec![5, 6, 7, 10]]);
    assert_eq!(entries(cache.path()), 2, "new texts, new entry");

    let other = tokenizer(model.path(), "great");
    assert_eq!(tokenize_cached(&other, &changed).unwrap(), vec![vec![5, 6, 7, 1]]);
    assert_eq!(entries(cache.path()), 3, "new vocabulary, new entry");

    for entry in std::fs::read_dir(cache.path().join("tokens")).unwrap().flatten() {
        std::fs::write(entry.path(), b"\x01\x00").unwrap();
    }
    assert_eq!(tokenize_cached(&tok, &texts).unwrap(), first, "a damaged entry is recomputed");
}
