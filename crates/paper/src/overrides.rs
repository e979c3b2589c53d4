//! Settings layered onto a base run: the `set` tables of an experiment (its
//! profile, its row and column) and `--set KEY=VALUE` from the command line.
//! Each key replaces the value at its dotted path. Every applied key
//! remembers where it was written, so that an unknown key or a value out of
//! range is reported at its place: `experiments/NAME.toml:LINE:COLUMN` or the
//! `--set` argument.

use anyhow::{Result, anyhow, bail};
use bertfit_data::settings::line_column;
use serde::de::DeserializeOwned;

/// A TOML file's name and text, to turn byte offsets into lines.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub label: String,
    pub text: String,
}

impl SourceFile {
    /// `label:LINE:COLUMN` of byte `offset`.
    pub fn place(&self, offset: usize) -> String {
        let (line, column) = line_column(&self.text, offset);
        format!("{}:{line}:{column}", self.label)
    }

    /// The place of the key at `path` (a chain of tables) in the file, if it is written there.
    pub fn locate(&self, path: &[&str]) -> Option<String> {
        let root = toml::de::DeTable::parse(&self.text).ok()?;
        let mut table = root.get_ref();
        let mut found = None;
        for (i, part) in path.iter().enumerate() {
            let (key, value) = table.iter().find(|(k, _)| k.get_ref() == part)?;
            found = Some(key.span().start);
            if i + 1 < path.len() {
                match value.get_ref() {
                    toml::de::DeValue::Table(inner) => table = inner,
                    _ => break,
                }
            }
        }
        found.map(|offset| self.place(offset))
    }
}

/// A run's settings as a TOML table, and where each changed key came from.
#[derive(Debug, Clone)]
pub struct Layered {
    table: toml::Table,
    /// `(dotted key, place)`, in the order applied.
    applied: Vec<(String, String)>,
}

impl Layered {
    pub fn new(base: toml::Table) -> Self {
        Self { table: base, applied: Vec::new() }
    }

    /// Replaces the value at `key` (dotted) with `value`; `place` says where the setting was written.
    pub fn set(&mut self, key: &str, value: toml::Value, place: String) -> Result<()> {
        let parts: Vec<&str> = key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            bail!("{place}: {key:?} is not a dotted key of the run schema");
        }
        let mut table = &mut self.table;
        for (i, part) in parts[..parts.len() - 1].iter().enumerate() {
            let entry = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => table = inner,
                _ => bail!("{place}: {} is a value, not a table, so {key} cannot be set", parts[..=i].join(".")),
            }
        }
        table.insert(parts[parts.len() - 1].to_string(), value);
        self.applied.push((key.to_string(), place));
        Ok(())
    }

    /// Where the setting at `key` was last written: the latest applied key
    /// that is `key`, holds it, or lies inside it.
    pub fn place_of(&self, key: &str) -> Option<&str> {
        let inside = |outer: &str, inner: &str| inner == outer || inner.starts_with(&format!("{outer}."));
        self.applied.iter().rev().find(|(k, _)| inside(k, key) || inside(key, k)).map(|(_, p)| p.as_str())
    }

    /// The settings as `T`; an error names the key and where it was written
    /// (`base_place` for keys no `set` touched).
    pub fn build<T: DeserializeOwned>(&self, base_place: &dyn Fn(&str) -> String) -> Result<T> {
        let value = toml::Value::Table(self.table.clone());
        serde_path_to_error::deserialize(value).map_err(|e| {
            let message = e.inner().to_string().trim().replace('\n', " ");
            let mut key = e.path().to_string();
            if key == "." {
                key.clear();
            }
            // An unknown key is reported at its table; name the key itself.
            if let Some(field) = message.strip_prefix("unknown field `").and_then(|m| m.split('`').next())
                && !key.ends_with(field)
            {
                key = if key.is_empty() { field.to_string() } else { format!("{key}.{field}") };
            }
            let place = self.place_of(&key).map(str::to_string).unwrap_or_else(|| base_place(&key));
            if key.is_empty() { anyhow!("{place}: {message}") } else { anyhow!("{place}: {key}: {message}") }
        })
    }
}

/// `KEY=VALUE` of `--set`: VALUE as TOML (`3e-5`, `true`, `{ kind = "head_only" }`),
/// or as a string when it is not TOML (`--set data.dataset=trec`).
pub fn parse_cli_set(arg: &str) -> Result<(String, toml::Value)> {
    let Some((key, value)) = arg.split_once('=') else {
        bail!("--set {arg}: expected KEY=VALUE, e.g. --set training.lr=3e-5");
    };
    let key = key.trim();
    let value = value.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}")).ok().and_then(|mut t| t.remove("v"));
    Ok((key.to_string(), parsed.unwrap_or_else(|| toml::Value::String(value.to_string()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bertfit_run::RunConfig;

    fn file() -> SourceFile {
        SourceFile { label: "e.toml".into(), text: "[run.data]\ndataset = \"trec\"\n[run.training]\nepochs = 1\n".into() }
    }

    fn base() -> toml::Table {
        let t: toml::Table = toml::from_str(&file().text).unwrap();
        t["run"].as_table().unwrap().clone()
    }

    #[test]
    fn sets_replace_values_and_errors_point_at_their_place() {
        let f = file();
        let base_place = |key: &str| {
            let mut path = vec!["run"];
            path.extend(key.split('.').filter(|p| !p.is_empty()));
            f.locate(&path).unwrap_or_else(|| f.label.clone())
        };
        let mut layered = Layered::new(base());
        layered.set("data.max_len", toml::Value::Integer(64), "row".into()).unwrap();
        let (key, value) = parse_cli_set("data.truncation={ kind = \"head_only\" }").unwrap();
        layered.set(&key, value, "--set".into()).unwrap();
        let config: RunConfig = layered.build(&base_place).unwrap();
        assert_eq!(config.data.max_len, 64);
        assert_eq!(config.training.epochs, 1);
        assert_eq!(config.data.truncation, Some(bertfit_data::Truncation::HeadOnly));

        let mut typo = layered.clone();
        let (key, value) = parse_cli_set("training.lrr=3e-5").unwrap();
        typo.set(&key, value, "--set training.lrr=3e-5".into()).unwrap();
        let error = typo.build::<RunConfig>(&base_place).unwrap_err().to_string();
        assert!(error.starts_with("--set training.lrr=3e-5: training"), "{error}");
        assert!(error.contains("lrr"), "{error}");

        let mut bad = Layered::new(base());
        bad.set("training.epochs", toml::Value::String("four".into()), "e.toml:9:1".into()).unwrap();
        let error = bad.build::<RunConfig>(&base_place).unwrap_err().to_string();
        assert!(error.starts_with("e.toml:9:1: training.epochs"), "{error}");
        // A key no set touched is found in the file.
        assert_eq!(f.locate(&["run", "training", "epochs"]).as_deref(), Some("e.toml:4:1"));
        assert!(bad.set("training.epochs.x", toml::Value::Integer(1), "p".into()).is_err());
    }

    #[test]
    fn cli_values_are_toml_or_strings() {
        assert_eq!(parse_cli_set("training.lr=3e-5").unwrap().1, toml::Value::Float(3e-5));
        assert_eq!(parse_cli_set("data.dataset=trec").unwrap().1, toml::Value::String("trec".into()));
        assert_eq!(parse_cli_set("training.bucketed=true").unwrap().1, toml::Value::Boolean(true));
        assert!(parse_cli_set("no-equals").is_err());
    }
}
