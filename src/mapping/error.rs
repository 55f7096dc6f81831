//! The errors of adapter folders and of mapping: [`LoadProblem`] (one problem of a folder),
//! [`MapError`] (a message that could not be mapped) and [`MappingError`] (what
//! `gateway map` fails with).
//!
//! # Invariants
//! - This file imports nothing else of `mapping`, so every other file of it may import it
//!   without making a circle.
//! - A [`LoadProblem`] reads `file:key: what: fix`; a [`MapError`] reads
//!   `origin: $.path: what (rule …)`. Neither carries the value of a personal field.

use std::fmt;

/// A problem of an adapter folder: `file:key: what: fix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadProblem {
    pub file: String,
    pub key: String,
    pub what: String,
    pub fix: String,
}

impl fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}: {}", self.file, self.key, self.what, self.fix)
    }
}

/// A message that could not be mapped: `origin: $.path: what (rule …)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {path}: {what}")]
pub struct MapError {
    /// The sample file name or `inbound request`.
    pub origin: String,
    /// JSON path in the vendor message (`$.phiLePhi[1].soTien`), or the rule key for
    /// constants and defaults.
    pub path: String,
    pub what: String,
}

/// What `gateway map` can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The adapter folder has problems; every one is listed, one a line.
    #[error("{}", lines(.0))]
    Load(Vec<LoadProblem>),
    /// The sample could not be read or mapped.
    #[error(transparent)]
    Map(MapError),
}

fn lines(problems: &[LoadProblem]) -> String {
    problems
        .iter()
        .map(LoadProblem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
