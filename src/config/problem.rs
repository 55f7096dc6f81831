//! What loading reports: a [`Problem`] names its file, its key, what is wrong and how to fix
//! it, and the [`Step`] that found it; a [`ConfigError`] is every problem of one file.
//!
//! A leaf: it imports nothing of the configuration. Section validators do not build problems
//! themselves; they report `p(key, what, fix)` and the validation driver
//! (`references.rs`) turns that into a [`Step::Invalid`] problem.

use std::fmt;

/// The step of loading that found a [`Problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The file could not be read.
    Read,
    /// The text is not valid TOML (loading stops there).
    Syntax,
    /// A key no section has (every one is reported).
    UnknownKey,
    /// A value of the wrong type or form (serde stops at the first).
    WrongType,
    /// A section's validator refused a value, or a combination of values.
    Invalid,
}

/// A problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Which step found it.
    pub step: Step,
    pub file: String,
    pub key: String,
    pub what: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}: {}", self.file, self.key, self.what, self.fix)
    }
}

/// Every problem of one file, one a line. A list rather than one variant per step, because
/// loading reports every problem it finds at once; each names its [`Step`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.problems))]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

fn lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
