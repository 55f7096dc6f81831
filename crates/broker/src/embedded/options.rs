//! Tuning of the embedded broker ([`EmbeddedOptions`]).
//!
//! # Invariants
//!
//! - Every default is stated once, in [`EmbeddedOptions::default`].

use crate::*;

/// Settings of the embedded queue. Every default is stated here.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// A consumer's leases expire after this long without a sign of life from it (a `next()`
    /// call or a settle). Must exceed the longest single processing step, or a slow but alive
    /// consumer sees its messages delivered again. Default 60 s.
    pub lease_ttl: Duration,
    /// Most requests committed in one transaction. Default 1024.
    pub max_batch: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(60),
            max_batch: 1024,
        }
    }
}
