//! The adapter's JSON Schemas (`schemas/<name>.json`), compiled once at load.
//!
//! # Invariants
//! - Schema error texts are the validator's *masked* messages: they never repeat the value
//!   that failed (it may be personal data); the JSON path says where it is.
//! - Every violation of a message is reported, not only the first.
//! - No schema is fetched from the network or the file system through `$ref` (the crate is
//!   built without those features): a schema is self-contained.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde_json::Value;

use super::error::MapError;

/// The compiled schemas of one adapter, by name (the file stem).
#[derive(Default)]
pub struct Schemas {
    by_name: BTreeMap<String, jsonschema::Validator>,
}

impl fmt::Debug for Schemas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Schemas {
    /// Load `dir/*.json`. Problems are `(file, what, fix)`; a missing folder is no schema.
    pub(crate) fn load(dir: &Path) -> (Schemas, Vec<(String, String, String)>) {
        let mut s = Schemas::default();
        let mut problems = Vec::new();
        let Ok(rd) = std::fs::read_dir(dir) else {
            return (s, problems);
        };
        let mut files: Vec<_> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for p in files {
            let file = p.display().to_string();
            let name = p
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = match std::fs::read_to_string(&p) {
                Ok(t) => t,
                Err(e) => {
                    problems.push((file, format!("cannot read: {e}"), "make it readable".into()));
                    continue;
                }
            };
            let json: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    problems.push((file, format!("not JSON: {e}"), "fix the syntax".into()));
                    continue;
                }
            };
            match jsonschema::validator_for(&json) {
                Ok(v) => {
                    s.by_name.insert(name, v);
                }
                Err(e) => problems.push((
                    file,
                    format!(
                        "not a valid JSON Schema at {}: {e}",
                        pointer_to_path(e.instance_path().as_str())
                    ),
                    "fix the schema (draft 2020-12 unless $schema says otherwise)".into(),
                )),
            }
        }
        (s, problems)
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// Check `v` against schema `name`; every violation is listed in one error.
    pub(crate) fn check(&self, name: &str, v: &Value, origin: &str) -> Result<(), MapError> {
        let Some(val) = self.by_name.get(name) else {
            return Err(MapError {
                origin: origin.to_string(),
                path: "$".into(),
                what: format!("no schema `{name}` in this adapter"),
            });
        };
        let errs: Vec<(String, String)> = val
            .iter_errors(v)
            .map(|e| {
                (
                    pointer_to_path(e.instance_path().as_str()),
                    e.masked().to_string(),
                )
            })
            .collect();
        let Some((path, first)) = errs.first().cloned() else {
            return Ok(());
        };
        let mut what = format!("violates schema {name}: {first}");
        for (p, m) in errs.iter().skip(1) {
            what.push_str(&format!("; {p}: {m}"));
        }
        Err(MapError {
            origin: origin.to_string(),
            path,
            what,
        })
    }
}

/// `/phiLePhi/0/soTien` → `$.phiLePhi[0].soTien`.
pub(crate) fn pointer_to_path(p: &str) -> String {
    let mut s = "$".to_string();
    for seg in p.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            s.push_str(&format!("[{seg}]"));
        } else {
            s.push('.');
            s.push_str(&seg);
        }
    }
    s
}
