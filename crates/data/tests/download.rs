//! Downloads against a local HTTP server that serves a small `.tar.gz`: the
//! first transfer is cut halfway and resumed, the archive is checked and
//! unpacked, a wrong checksum is refused, and a second use works offline.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bertfit_data::catalogue::Source;
use bertfit_data::download::{Pinned, hash_file};

/// What the server saw: each request's path and `Range` header.
#[derive(Default)]
struct Log {
    requests: Vec<(String, Option<String>)>,
}

/// A one-thread HTTP/1.1 server: `files` by path, `Range: bytes=N-` answered
/// with 206; the first full response of a path in `cut` stops after that many bytes.
fn serve(files: HashMap<String, Vec<u8>>, cut: HashMap<String, usize>) -> (String, Arc<Mutex<Log>>) {
    serve_with(files, cut, true)
}

/// As [`serve`]; without `ranges`, a `Range` header is ignored (200, the whole file).
fn serve_with(files: HashMap<String, Vec<u8>>, cut: HashMap<String, usize>, ranges: bool) -> (String, Arc<Mutex<Log>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Log::default()));
    let seen = log.clone();
    std::thread::spawn(move || {
        let mut cut = cut;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            answer(stream, &files, &mut cut, &seen, ranges);
        }
    });
    (base, log)
}

fn answer(mut stream: TcpStream, files: &HashMap<String, Vec<u8>>, cut: &mut HashMap<String, usize>, log: &Mutex<Log>, ranges: bool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap() == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_string());
        }
    }
    log.lock().unwrap().requests.push((path.clone(), range.clone()));
    let Some(body) = files.get(&path) else {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let start = range
        .as_deref()
        .filter(|_| ranges)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
    let head = match start {
        Some(start) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
            body.len() - start,
            body.len() - 1,
            body.len()
        ),
        None => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()),
    };
    stream.write_all(head.as_bytes()).unwrap();
    let from = start.unwrap_or(0);
    let to = match (start, cut.remove(&path)) {
        (None, Some(at)) => at,
        _ => body.len(),
    };
    let _ = stream.write_all(&body[from..to]);
    let _ = stream.flush();
}

/// A `.tar.gz` of `corpus_csv/{train,test}.csv`, large enough that a cut leaves a partial file.
fn archive() -> (Vec<u8>, String) {
    let train: String = (0..4000).map(|i| format!("\"{}\",\"title {i}\",\"text number {i} of the corpus\"\n", 1 + i % 4)).collect();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none()));
    for (name, text) in [("corpus_csv/train.csv", train.as_str()), ("corpus_csv/test.csv", "\"2\",\"t\",\"a test row\"\n")] {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, text.as_bytes()).unwrap();
    }
    (tar.into_inner().unwrap().finish().unwrap(), train)
}

fn checksums(bytes: &[u8]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, bytes).unwrap();
    hash_file(&path).unwrap()
}

/// An address where nothing listens: what offline looks like to curl.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

#[test]
fn download_resumes_after_a_cut_is_checked_unpacked_and_then_works_offline() {
    let (bytes, train) = archive();
    let (sha256, md5) = checksums(&bytes);
    let half = bytes.len() / 2;
    let files = HashMap::from([("/corpus_csv.tgz".to_string(), bytes.clone())]);
    let (base, log) = serve(files, HashMap::from([("/corpus_csv.tgz".to_string(), half)]));
    let cache = tempfile::tempdir().unwrap();
    let url = format!("{base}/corpus_csv.tgz");
    let pinned = Pinned { url: &url, sha256: Some(&sha256), md5: Some(&md5), bytes: Some(bytes.len() as u64) };

    let file = pinned.fetch_member(cache.path(), "corpus_csv/train.csv").unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), train);
    let requests = log.lock().unwrap().requests.clone();
    assert_eq!(requests.len(), 2, "one cut transfer and one resumed: {requests:?}");
    assert_eq!(requests[0].1, None);
    assert_eq!(requests[1].1.as_deref(), Some(format!("bytes={half}-").as_str()), "the second request resumes at the cut");
    let folder = pinned.folder(cache.path()).unwrap();
    assert_eq!(std::fs::read(folder.join("corpus_csv.tgz")).unwrap(), bytes);
    assert!(!folder.join("corpus_csv.tgz.partial").exists());

    // The other member comes from the same archive, without a request.
    let test = pinned.fetch_member(cache.path(), "corpus_csv/test.csv").unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(test).unwrap(), "\"2\",\"t\",\"a test row\"\n");
    // Offline (the same file at an address where nothing listens): from the cache.
    let offline_url = format!("{}/corpus_csv.tgz", closed_port());
    let offline = Pinned { url: &offline_url, ..pinned };
    assert_eq!(offline.fetch_member(cache.path(), "corpus_csv/train.csv").unwrap().unwrap(), file);
    assert_eq!(log.lock().unwrap().requests.len(), 2, "a second use makes no request");

    let missing = format!("{:#}", pinned.fetch_member(cache.path(), "corpus_csv/dev.csv").unwrap_err());
    assert!(missing.contains("corpus_csv/dev.csv is not in"), "{missing}");
}

#[test]
fn a_cut_download_from_a_server_that_cannot_resume_starts_over() {
    let (bytes, train) = archive();
    let (sha256, _) = checksums(&bytes);
    let path = "/corpus_csv.tgz".to_string();
    let (base, log) = serve_with(HashMap::from([(path.clone(), bytes.clone())]), HashMap::from([(path, bytes.len() / 3)]), false);
    let cache = tempfile::tempdir().unwrap();
    let url = format!("{base}/corpus_csv.tgz");
    let pinned = Pinned { url: &url, sha256: Some(&sha256), md5: None, bytes: Some(bytes.len() as u64) };
    let file = pinned.fetch_member(cache.path(), "corpus_csv/train.csv").unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(file).unwrap(), train);
    let requests = log.lock().unwrap().requests.clone();
    assert!(requests.len() >= 3 && requests.last().unwrap().1.is_none(), "cut, refused resume, whole again: {requests:?}");
}

#[test]
fn a_download_whose_checksum_differs_is_refused_and_removed() {
    let (bytes, _) = archive();
    let (sha256, _) = checksums(&bytes);
    let (base, _) = serve(HashMap::from([("/corpus_csv.tgz".to_string(), bytes.clone())]), HashMap::new());
    let url = format!("{base}/corpus_csv.tgz");
    for (sha, md5, kind) in [(None, Some("0123456789abcdef0123456789abcdef"), "md5"), (Some("ab".repeat(32)), None, "sha256")] {
        let cache = tempfile::tempdir().unwrap();
        let pinned = Pinned { url: &url, sha256: sha.as_deref(), md5, bytes: None };
        let err = format!("{:#}", pinned.fetch(cache.path()).unwrap_err());
        assert!(err.contains(&format!("{kind} mismatch for corpus_csv.tgz from {url}")), "{err}");
        assert!(err.lines().count() == 1, "one line: {err}");
        let folder = pinned.folder(cache.path()).unwrap();
        assert!(!folder.join("corpus_csv.tgz").exists() && !folder.join("corpus_csv.tgz.partial").exists(), "nothing kept");
    }
    // A size that differs is refused before hashing.
    let cache = tempfile::tempdir().unwrap();
    let pinned = Pinned { url: &url, sha256: Some(&sha256), md5: None, bytes: Some(bytes.len() as u64 + 1) };
    let err = format!("{:#}", pinned.fetch(cache.path()).unwrap_err());
    assert!(err.contains(&format!("expected {} bytes, got {}", bytes.len() + 1, bytes.len())), "{err}");
}

#[test]
fn offline_the_error_names_the_url_and_the_folder_for_a_copy_and_a_copy_put_there_is_used() {
    let (bytes, _) = archive();
    let (sha256, md5) = checksums(&bytes);
    let cache = tempfile::tempdir().unwrap();
    let url = format!("{}/corpus_csv.tgz", closed_port());
    let pinned = Pinned { url: &url, sha256: Some(&sha256), md5: Some(&md5), bytes: None };
    let why = pinned.fetch(cache.path()).unwrap().unwrap_err();
    let folder = pinned.folder(cache.path()).unwrap();
    assert!(why.contains(&format!("could not download {url}")), "{why}");
    assert!(why.contains(&folder.join("corpus_csv.tgz").display().to_string()), "{why}");
    // The user puts the archive there: it is checked, then used.
    std::fs::write(folder.join("corpus_csv.tgz"), &bytes).unwrap();
    assert!(pinned.fetch_member(cache.path(), "corpus_csv/test.csv").unwrap().is_ok());
    let wrong = tempfile::tempdir().unwrap();
    let folder = pinned.folder(wrong.path()).unwrap();
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("corpus_csv.tgz"), b"not the archive").unwrap();
    let err = format!("{:#}", pinned.fetch(wrong.path()).unwrap_err());
    assert!(err.contains("sha256 mismatch for corpus_csv.tgz"), "{err}");
}

#[test]
fn a_catalogue_url_source_with_a_member_resolves_into_the_cache() {
    let (bytes, train) = archive();
    let (_, md5) = checksums(&bytes);
    let (base, _) = serve(HashMap::from([("/corpus_csv.tgz".to_string(), bytes)]), HashMap::new());
    let cache = tempfile::tempdir().unwrap();
    // This test binary's only test that reads the environment.
    unsafe { std::env::set_var("BERTFIT_CACHE", cache.path()) };
    let source = Source {
        url: Some(format!("{base}/corpus_csv.tgz")),
        md5: Some(md5),
        member: Some("corpus_csv/train.csv".into()),
        ..Default::default()
    };
    let resolved = source.resolve().unwrap().unwrap();
    assert!(resolved.path.starts_with(cache.path()));
    assert_eq!(std::fs::read_to_string(&resolved.path).unwrap(), train);
    assert!(resolved.origin.ends_with("corpus_csv.tgz:corpus_csv/train.csv"), "{}", resolved.origin);
    let no_checksum = Source { url: Some(format!("{base}/corpus_csv.tgz")), ..Default::default() };
    assert!(format!("{:#}", no_checksum.resolve().unwrap_err()).contains("needs key sha256 or md5"));
    assert!(Path::new(&resolved.path).is_file());
}
