//! Readers on small fixtures in the original formats, on the real TREC and AG's
//! News files, and their errors on bad input.

use std::path::{Path, PathBuf};

use bertfit_data::catalogue::{self, DatasetSpec};
use bertfit_data::readers::read_split;
use bertfit_data::{Dataset, Example};

fn spec(toml_text: &str) -> DatasetSpec {
    let spec: DatasetSpec = toml::from_str(toml_text).unwrap();
    spec.validate().unwrap();
    spec
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

fn ex(text: &str, label: usize) -> Example {
    Example::new(text, label)
}

/// Text and label only (the origin is tested on its own).
fn plain(examples: &[Example]) -> Vec<Example> {
    examples.iter().map(|e| Example::new(e.text.clone(), e.label)).collect()
}

const AG: &str = r#"
name = "ag"
description = "fixture"
classes = ["World", "Sports", "Business", "Sci/Tech"]
domain = "topic"
format = { kind = "zhang_csv", columns = ["label", "title", "description"], text = ["title", "description"] }
train = { sources = [{ local = "/unused" }] }
"#;

#[test]
fn zhang_csv_joins_fields_unescapes_and_maps_one_based_labels() {
    // Only `\n` is an escape in these files; other backslashes are kept as they are.
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "train.csv",
        b"\"3\",\"Wall St. \"\"Bears\"\"\",\"Short-sellers, \\\\band of cynics\\nare back.\"\n\"1\",\"Title\",\"\"\n",
    );
    let out = read_split(&spec(AG), &file).unwrap();
    assert_eq!(plain(&out.examples), vec![ex("Wall St. \"Bears\" Short-sellers, \\\\band of cynics\nare back.", 2), ex("Title", 0)]);

    let bad = write(dir.path(), "bad.csv", b"\"3\",\"a\",\"b\"\n\"9\",\"c\",\"d\"\n");
    let err = format!("{:#}", read_split(&spec(AG), &bad).unwrap_err());
    assert!(err.contains("bad.csv") && err.contains("line 2") && err.contains("outside the 4 classes"), "{err}");

    let ragged = write(dir.path(), "ragged.csv", b"\"3\",\"a\",\"b\"\n\"1\",\"c\"\n");
    let err = format!("{:#}", read_split(&spec(AG), &ragged).unwrap_err());
    assert!(err.contains("ragged.csv, line 2: malformed row"), "{err}");
    let long = write(dir.path(), "long.csv", b"\"3\",\"a\",\"b\"\n\"1\",\"c\",\"d\",\"e\"\n");
    let err = format!("{:#}", read_split(&spec(AG), &long).unwrap_err());
    assert!(err.contains("long.csv") && err.contains("malformed"), "{err}");

    let err = format!("{:#}", read_split(&spec(AG), &dir.path().join("missing.csv")).unwrap_err());
    assert!(err.contains("missing.csv") && err.contains("does not exist"), "{err}");
}

const TREC: &str = r#"
name = "trec"
description = "fixture"
classes = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
domain = "topic"
format = { kind = "trec_label" }
train = { sources = [{ local = "/unused" }] }
"#;

#[test]
fn trec_reads_coarse_labels_as_latin1_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "t.label", b"DESC:manner How did serfdom develop ?\nLOC:other What is the sister\xf0city ?\nLOC:country What country did the Nazis occupy for 1 , CD NNS IN NNP NNP NNP .\n");
    let out = read_split(&spec(TREC), &file).unwrap();
    assert_eq!(plain(&out.examples)[0], ex("How did serfdom develop ?", 1));
    assert_eq!(plain(&out.examples)[1], ex("What is the sister\u{f0}city ?", 4));
    assert_eq!(out.examples[2].label, 4);
    let bad = write(dir.path(), "bad.label", b"DESC:manner ok ?\nWHAT:x bad ?\n");
    let err = format!("{:#}", read_split(&spec(TREC), &bad).unwrap_err());
    assert!(err.contains("bad.label, line 2") && err.contains("\"WHAT\""), "{err}");
}

#[test]
fn aclimdb_and_folder_per_class() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "train/pos/1_9.txt", b"Great <br /><br />film.");
    write(dir.path(), "train/neg/0_2.txt", b"Dull.");
    write(dir.path(), "train/neg/1_1.txt", b"   ");
    write(dir.path(), "train/unsup/0_0.txt", b"No label.");
    let imdb = spec(
        r#"
name = "imdb"
description = "fixture"
classes = ["neg", "pos"]
domain = "topic"
format = { kind = "acl_imdb" }
train = { sources = [{ local = "/unused" }] }
"#,
    );
    let out = read_split(&imdb, &dir.path().join("train")).unwrap();
    assert_eq!(plain(&out.examples), vec![ex("Dull.", 0), ex("Great <br /><br />film.", 1)]);
    assert_eq!(out.skipped_empty, 1);
    // Positions in the file: the skipped empty text keeps its place.
    assert_eq!(out.examples.iter().map(|e| e.origin.id("d")).collect::<Vec<_>>(), ["d/train/0", "d/train/2"]);
    assert_eq!(bertfit_data::readers::read_unlabeled_folder(&dir.path().join("train/unsup")).unwrap(), vec!["No label."]);

    let mut strict = imdb.clone();
    strict.empty_text = catalogue::EmptyText::Fail;
    let err = format!("{:#}", read_split(&strict, &dir.path().join("train")).unwrap_err());
    assert!(err.contains("1_1.txt") && err.contains("empty text"), "{err}");

    let folders = spec(
        r#"
name = "bbc"
description = "fixture"
classes = ["sport", "tech"]
domain = "topic"
format = { kind = "folder_per_class", extension = "txt" }
train = { sources = [{ local = "/unused" }] }
"#,
    );
    write(dir.path(), "bbc/sport/001.txt", b"Goal.");
    write(dir.path(), "bbc/tech/001.txt", b"\xa315m chip");
    let err = format!("{:#}", read_split(&folders, &dir.path().join("bbc")).unwrap_err());
    assert!(err.contains("001.txt is not valid UTF-8"), "{err}");
    let mut mixed = folders.clone();
    mixed.format = catalogue::Format::FolderPerClass { extension: "txt".into(), encoding: catalogue::Encoding::Utf8OrLatin1 };
    let out = read_split(&mixed, &dir.path().join("bbc")).unwrap();
    assert_eq!(plain(&out.examples), vec![ex("Goal.", 0), ex("£15m chip", 1)]);
    write(dir.path(), "bbc/music/001.txt", b"x");
    let err = format!("{:#}", read_split(&mixed, &dir.path().join("bbc")).unwrap_err());
    assert!(err.contains("folder \"music\" is not one of the classes"), "{err}");
}

fn table_spec(file: &str, labels: &str) -> DatasetSpec {
    spec(&format!(
        r#"
name = "t"
description = "fixture"
classes = ["neg", "pos"]
domain = "topic"
format = {{ kind = "table", file = "{file}", text = ["text"], label = "label", labels = "{labels}", filter = {{ column = "source", equals = "a" }} }}
train = {{ sources = [{{ local = "/unused" }}] }}
"#
    ))
}

#[test]
fn csv_tsv_jsonl_parquet_tables_with_filter() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let expected = vec![ex("good, \"really\"", 1), ex("bad", 0)];
    let csv = write(dir.path(), "t.csv", b"text,label,source\n\"good, \"\"really\"\"\",1,a\nskip me,0,b\nbad,0,a\n");
    assert_eq!(plain(&read_split(&table_spec("csv", "index"), &csv).unwrap().examples), expected);
    let tsv = write(dir.path(), "t.tsv", b"text\tlabel\tsource\ngood, \"really\"\tpos\ta\nbad\tneg\ta\n");
    let tsv_spec = table_spec("tsv", "name");
    // TSV fields here are unquoted; polars keeps the inner quotes as text.
    assert_eq!(plain(&read_split(&tsv_spec, &tsv).unwrap().examples), expected);
    let jsonl = write(dir.path(), "t.jsonl", b"{\"text\": \"good, \\\"really\\\"\", \"label\": 1, \"source\": \"a\"}\n{\"text\": \"x\", \"label\": 1, \"source\": \"b\"}\n{\"text\": \"bad\", \"label\": 0, \"source\": \"a\"}\n");
    assert_eq!(plain(&read_split(&table_spec("jsonl", "index"), &jsonl).unwrap().examples), expected);
    let parquet = dir.path().join("t.parquet");
    let mut df = df!("text" => ["good, \"really\"", "bad"], "label" => [1i64, 0], "source" => ["a", "a"]).unwrap();
    ParquetWriter::new(std::fs::File::create(&parquet).unwrap()).finish(&mut df).unwrap();
    assert_eq!(plain(&read_split(&table_spec("parquet", "index"), &parquet).unwrap().examples), expected);

    let unknown = write(dir.path(), "u.csv", b"text,label,source\nhmm,neutral,a\n");
    let err = format!("{:#}", read_split(&table_spec("csv", "name"), &unknown).unwrap_err());
    assert!(err.contains("u.csv, row 1") && err.contains("\"neutral\" is not one of the classes"), "{err}");
    let no_col = write(dir.path(), "n.csv", b"body,label,source\nhmm,1,a\n");
    let err = format!("{:#}", read_split(&table_spec("csv", "index"), &no_col).unwrap_err());
    assert!(err.contains("no column \"text\""), "{err}");
}

#[test]
fn unknown_keys_in_a_dataset_file_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "x.toml", format!("{AG}\nlabel_colum = 3\n").as_bytes());
    let err = format!("{:#}", DatasetSpec::from_file(&path).unwrap_err());
    assert!(err.contains("x.toml") && err.contains("label_colum"), "{err}");
    let path = write(dir.path(), "y.toml", AG.replace("local = \"/unused\"", "local = \"/unused\", sha = \"1\"").as_bytes());
    let err = format!("{:#}", DatasetSpec::from_file(&path).unwrap_err());
    assert!(err.contains("sha"), "{err}");
}

#[test]
fn every_catalogue_entry_parses_and_is_built_in() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "toml") {
            let spec = DatasetSpec::from_file(&entry.path()).unwrap();
            assert_eq!(Some(spec.name.as_str()), entry.path().file_stem().and_then(|s| s.to_str()), "name = file name");
            names.push(spec.name);
        }
    }
    names.sort();
    let builtin: Vec<String> = catalogue::BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names, builtin, "datasets/ and the built-in list (catalogue::BUILTIN) differ");
    for (name, _) in catalogue::BUILTIN {
        assert_eq!(catalogue::find(name).unwrap().name, *name);
    }
}

/// Points the data root at the paper's TREC and AG's News copies beside the
/// checkout (`../shared/datasets`) unless `$BERTFIT_DATA_ROOT` is set.
fn use_local_copies_when_present() {
    if std::env::var_os("BERTFIT_DATA_ROOT").is_none() {
        let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets");
        if beside.is_dir() {
            unsafe { std::env::set_var("BERTFIT_DATA_ROOT", beside) };
        }
    }
}

/// A split of a catalogue dataset from its sources in order (a local copy,
/// else its pinned download into the cache); `None` when neither is at hand
/// (offline, no copy): the test then prints "skipped: ..." (`just test` runs
/// the `real_data_` tests with their output shown), and fails under
/// BERTFIT_REQUIRE_REAL_DATA=1.
fn real_split(spec: &DatasetSpec, split: &str) -> Option<Vec<Example>> {
    let sources = if split == "train" { &spec.train } else { spec.test.as_ref().unwrap() };
    match sources.resolve(&spec.name, split) {
        Ok(file) => Some(read_split(spec, &file.path).unwrap().examples),
        Err(e) if catalogue::unavailable(&e).is_some() && std::env::var_os("BERTFIT_REQUIRE_REAL_DATA").is_none() => {
            println!("skipped: {} {split}: {e:#} (BERTFIT_REQUIRE_REAL_DATA=1 makes this a failure)", spec.name);
            None
        }
        Err(e) => panic!("{e:#}"),
    }
}

fn counts(examples: &[Example], classes: usize) -> Vec<usize> {
    (0..classes).map(|c| examples.iter().filter(|e| e.label == c).count()).collect()
}

#[test]
fn real_data_trec() {
    use_local_copies_when_present();
    let trec = catalogue::find("trec").unwrap();
    let (Some(train), Some(test)) = (real_split(&trec, "train"), real_split(&trec, "test")) else { return };
    assert_eq!(counts(&train, 6), vec![86, 1162, 1250, 1223, 835, 896]);
    assert_eq!(counts(&test, 6), vec![9, 138, 94, 65, 81, 113]);
    // The quirks are kept: the lone 0xF0 byte (line 66), the POS-tagged line 80.
    assert_eq!(train[65].text, "Which city has the oldest relationship as a sister\u{f0}city with Los Angeles ?");
    assert_eq!(train[79].text, "What country did the Nazis occupy for 1 , CD NNS IN NNP NNP NNP .");
    // A local copy is recorded under the data root's name, not this machine's folder.
    let origin = trec.train.resolve(&trec.name, "train").unwrap().origin;
    if origin.starts_with("local ") {
        assert_eq!(origin, "local $BERTFIT_DATA_ROOT/trec/train_5500.label");
    }
}

#[test]
fn real_data_ag_news_test() {
    use_local_copies_when_present();
    let ag = catalogue::find("ag_news").unwrap();
    let Some(test) = real_split(&ag, "test") else { return };
    assert_eq!(counts(&test, 4), [1900, 1900, 1900, 1900]);
    assert!(test.iter().all(|e| !e.text.contains("\\n")));

    // The small AG set: train and test carved from test.csv, stratified and recorded.
    let small = Dataset::load(&catalogue::find("ag_news-test7600").unwrap(), 0).unwrap();
    assert_eq!(small.test.len(), 4 * 380);
    assert_eq!(small.dev.len() + small.train.len(), 7600 - 1520);
    assert_eq!(small.provenance.test_carved, Some(0.2));
    let again = Dataset::load(&catalogue::find("ag_news-test7600").unwrap(), 0).unwrap();
    assert_eq!(small.test, again.test);
}

#[test]
fn a_local_copy_with_the_wrong_sha256_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "t.label", b"DESC:manner How ?\n");
    let source = catalogue::Source { local: Some(file.clone()), sha256: Some("00".repeat(32)), ..Default::default() };
    let err = format!("{:#}", source.resolve().unwrap_err());
    assert!(err.contains("sha256 mismatch") && err.contains("t.label"), "{err}");
    let missing = catalogue::Source { local: Some(dir.path().join("nope")), ..Default::default() };
    assert!(missing.resolve().unwrap().is_err(), "a missing local copy falls through to the next source");
    let both = catalogue::Source { local: Some(file), url: Some("x".into()), ..Default::default() };
    assert!(format!("{:#}", both.resolve().unwrap_err()).contains("exactly one of"));
}
