//! A job's identity: the hash of everything that decides its result. Runs,
//! pre-training stages and multi-task stages are each named by one, so a
//! finished one is found again and a change of any input makes another.

use serde_json::{Map, Value};

/// Version of the identity's layout; part of every identity.
const SCHEMA: u64 = 1;

/// Version of the code's numbers: every change that alters what a run,
/// stage or evaluation computes (its losses, errors or predictions) must bump
/// it, so that no result of the old code is taken for the new one's. Pinned
/// by `crates/cli/tests/results_version.rs`, whose tiny run's losses are a
/// committed fixture tagged with this number: a numeric change fails that
/// test until the fixture and this version move together.
pub const RESULTS_VERSION: u64 = 3;

/// The identity of the inputs `parts` (named, in order): the first 16 hex
/// digits of the sha256 of their JSON, with the schema and results versions.
pub fn identity(parts: Vec<(&str, Value)>) -> String {
    let mut key = Map::new();
    key.insert("schema".into(), SCHEMA.into());
    key.insert("results_version".into(), RESULTS_VERSION.into());
    for (name, value) in parts {
        key.insert(name.into(), value);
    }
    bertfit_data::hash_bytes(Value::Object(key).to_string().as_bytes())[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_the_hash_of_the_parts_with_the_schema() {
        let parts = || vec![("run", serde_json::json!({"lr": 2e-5})), ("model_weights", "abc".into())];
        let expected = serde_json::json!({"schema": 1, "results_version": RESULTS_VERSION, "run": {"lr": 2e-5}, "model_weights": "abc"});
        assert_eq!(identity(parts()), bertfit_data::hash_bytes(expected.to_string().as_bytes())[..16]);
        assert_ne!(identity(parts()), identity(vec![("run", serde_json::json!({"lr": 3e-5})), ("model_weights", "abc".into())]));
    }
}
