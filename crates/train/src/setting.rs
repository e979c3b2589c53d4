//! A setting that is out of range, named by its key (`training.lr`), so that
//! whoever read it from a file can point at the file and line.

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
