//! The project's settings files (experiments, runs, pre-training runs, dataset
//! entries) read as TOML, and their errors: a file that does not parse (an
//! unknown key among them) is one line, `FILE:LINE:COLUMN: message`; a
//! setting that parses but is out of range is an [`InvalidSetting`], named by
//! its dotted key (`training.lr`), so that whoever read it from a file can
//! point at the file and line.

use std::path::Path;

use anyhow::{Context, Result};

/// Parses TOML `text` into `T`; a parse error (an unknown key among them) is
/// one line: `LABEL:LINE:COLUMN: message`, LABEL naming the file.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, label: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let place = e.span().map(|span| line_column(text, span.start)).map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default();
        anyhow::anyhow!("{label}{place}: {}", e.message().trim().replace('\n', " "))
    })
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Reads a TOML file into `T`; errors as [`parse_toml`], naming the file.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_toml(&text, &path.display().to_string())
}

/// An invalid setting: its dotted key and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidSetting {
    pub key: String,
    pub message: String,
}

impl InvalidSetting {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }

    /// The same error for a setting nested under `prefix` (`training` + `lr`).
    pub fn within(mut self, prefix: &str) -> Self {
        self.key = format!("{prefix}.{}", self.key);
        self
    }
}

impl std::fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for InvalidSetting {}

/// The `InvalidSetting` behind an error, if that is what it is.
pub fn invalid_setting(error: &anyhow::Error) -> Option<&InvalidSetting> {
    error.chain().find_map(|e| e.downcast_ref::<InvalidSetting>())
}
