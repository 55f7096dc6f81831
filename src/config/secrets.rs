//! Secrets, only ever by reference: `{ env = "NAME" }` or `{ file = "path" }`. A value is read
//! when resolved and never printed ([`Secret`]'s `Debug` and `Display` redact it).
//!
//! A leaf: it imports nothing of the configuration. It also holds the two URL helpers of the
//! backends (no password written in a URL; the password joined to it at connect time).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// A reference to a secret. The value is read by [`SecretRef::resolve`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SecretRef {
    /// Read from an environment variable.
    Env { env: String },
    /// Read from a file (trailing newline trimmed); relative to the config file.
    File { file: PathBuf },
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env { env } => write!(f, "secret(env {env})"),
            SecretRef::File { file } => write!(f, "secret(file {})", file.display()),
        }
    }
}

/// A resolved secret value. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(v: impl Into<String>) -> Self {
        Secret(v.into())
    }
    /// The value, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl SecretRef {
    /// Read the secret. `base` is the config file's folder (for relative file paths).
    ///
    /// An empty or whitespace-only value is an error, never "no secret": an empty token would
    /// otherwise switch authentication off.
    pub fn resolve(&self, base: &Path) -> Result<Secret, SecretProblem> {
        self.read(base)
    }

    /// Read the secret, telling apart a reference that cannot be read here (the variable is
    /// unset, the file is missing: perhaps only on the build machine) from one that reads empty
    /// (always a mistake). `check-config` reports the first and refuses the second.
    pub fn read(&self, base: &Path) -> Result<Secret, SecretProblem> {
        let (value, whence) = match self {
            SecretRef::Env { env } => (
                std::env::var(env).map_err(|_| {
                    SecretProblem::Unavailable(format!("environment variable {env} is not set"))
                })?,
                format!("environment variable {env}"),
            ),
            SecretRef::File { file } => {
                let p = if file.is_absolute() {
                    file.clone()
                } else {
                    base.join(file)
                };
                let s = std::fs::read_to_string(&p).map_err(|e| {
                    SecretProblem::Unavailable(format!(
                        "cannot read secret file {}: {e}",
                        p.display()
                    ))
                })?;
                (
                    s.trim_end_matches(['\n', '\r']).to_string(),
                    format!("secret file {}", p.display()),
                )
            }
        };
        if value.trim().is_empty() {
            return Err(SecretProblem::Empty(format!(
                "{whence} is empty: a secret must have a value"
            )));
        }
        Ok(Secret(value))
    }
}

/// Why a secret reference gave no value. Each message names the variable or file, never a
/// value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecretProblem {
    /// Not readable here: the variable is unset or the file cannot be read.
    #[error("{0}")]
    Unavailable(String),
    /// Read, but empty or whitespace: never accepted (it would switch a check off).
    #[error("{0}")]
    Empty(String),
}

/// Why a backend URL could not be given its password
/// ([`Loaded::broker_url`](super::Loaded::broker_url),
/// [`Loaded::store_url`](super::Loaded::store_url)).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlPasswordError {
    /// The password reference gave no value.
    #[error(transparent)]
    Secret(#[from] SecretProblem),
    /// The URL has no `scheme://`.
    #[error("URL without scheme")]
    NoScheme,
    /// The URL has no `user@` for the password to join.
    #[error("the URL names no user to attach the password to")]
    NoUser,
}

/// Whether a URL carries a password in its `user:password@` part (it must not: the password
/// is given by reference and joined by [`with_password`]).
pub(super) fn url_has_password(url: &str) -> bool {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .map(|auth| auth.contains('@') && auth.split('@').next().is_some_and(|ui| ui.contains(':')))
        .unwrap_or(false)
}

/// `url` with the resolved password inserted after its user; unchanged without a password.
pub(super) fn with_password(
    url: &str,
    password: Option<&SecretRef>,
    base: &Path,
) -> Result<String, UrlPasswordError> {
    let Some(secret) = password else {
        return Ok(url.to_string());
    };
    let pw = secret.resolve(base)?;
    let (scheme, rest) = url.split_once("://").ok_or(UrlPasswordError::NoScheme)?;
    let (auth, tail) = rest.split_once('@').ok_or(UrlPasswordError::NoUser)?;
    Ok(format!(
        "{scheme}://{auth}:{}@{tail}",
        percent_encode(pw.expose())
    ))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
