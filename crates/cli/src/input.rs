//! Texts to read, one per line, from a file or standard input.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result};

/// Reads one text per line; a line that is not UTF-8 is an error naming it.
pub fn read_lines(input: Option<&Path>) -> Result<Vec<String>> {
    let (reader, name): (Box<dyn Read>, String) = match input {
        Some(path) => {
            (Box::new(std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?), path.display().to_string())
        }
        None => (Box::new(std::io::stdin()), "standard input".into()),
    };
    let mut lines = Vec::new();
    for (i, line) in BufReader::new(reader).split(b'\n').enumerate() {
        let mut bytes = line.with_context(|| format!("cannot read {name}"))?;
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| anyhow::anyhow!("line {} of {name} is not valid UTF-8 (byte {})", i + 1, e.utf8_error().valid_up_to()))?;
        lines.push(text);
    }
    Ok(lines)
}
