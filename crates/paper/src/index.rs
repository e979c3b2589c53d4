//! `results/README.md`, the index of every table and plot under `results/`;
//! what follows its [`NOTES`] line is written by hand and kept.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;
use bertfit_run::write_atomic;

/// The line after which `results/README.md` is written by hand and kept.
pub const NOTES: &str = "<!-- Notes below this line are written by hand; `bertfit reproduce` keeps them. -->";

/// `results/README.md`: every table and plot under `results/`, then the notes it had.
pub fn write_index(results: &Path) -> Result<()> {
    let path = results.join("README.md");
    let notes = std::fs::read_to_string(&path).ok().and_then(|old| old.find(NOTES).map(|at| old[at..].to_string()));
    let mut tables = Vec::new();
    for entry in std::fs::read_dir(results).into_iter().flatten().flatten() {
        let dir = entry.path();
        // A user's own results inside the committed ones have their own index.
        if dir.file_name().is_some_and(|n| n == "local") {
            continue;
        }
        for candidate in std::iter::once(dir.clone()).chain(std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path())) {
            if candidate.join("table.md").is_file() {
                tables.push(candidate);
            }
        }
    }
    tables.sort();
    let mut md = String::from(
        "# Results\n\nWritten by `bertfit reproduce` (`just reproduce NAME`); each table says which model, data, profile, backend, seeds and commit produced it. Runs are in `NAME/runs/ID/` (`metrics.json`, `curve.csv`, `config.toml`, `predictions/dev.csv.gz` and `predictions/test.csv.gz`), under the identity of their settings; a profile other than quick renders into `NAME/PROFILE/`.\n\n| experiment | table | plots |\n|---|---|---|\n",
    );
    for dir in &tables {
        let rel = dir.strip_prefix(results).unwrap_or(dir);
        let title = std::fs::read_to_string(dir.join("table.md"))
            .ok()
            .and_then(|t| t.lines().next().map(|l| l.trim_start_matches("# ").to_string()))
            .unwrap_or_default();
        let plots: BTreeSet<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.path().file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| n.ends_with(".png") || n.ends_with(".svg"))
            .collect();
        let links = plots.iter().map(|p| format!("[{p}]({}/{p})", rel.display())).collect::<Vec<_>>().join(" ");
        md.push_str(&format!("| {title} | [table.md]({0}/table.md), [table.csv]({0}/table.csv) | {links} |\n", rel.display()));
    }
    for other in ["bench", "datasets", "runs"] {
        if results.join(other).is_dir() {
            md.push_str(&format!("\nAlso: [`{other}/`]({other}/)"));
        }
    }
    md.push('\n');
    if let Some(notes) = notes {
        md.push('\n');
        md.push_str(&notes);
    }
    write_atomic(&path, &md)
}
