//! Names the configuration gives things (sources, adapters, routes, signing profiles, ops
//! tokens, job source names): lower-case ASCII letters, digits, `-` and `_`, never empty.
//!
//! A leaf: it imports nothing of the configuration, so every section may use it.

/// Whether `s` is a valid name: non-empty, only `a-z`, `0-9`, `-` and `_`.
pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}
