//! The store's one error type, shared by both backends and every topic file.
//!
//! # Invariants
//!
//! - This file depends on nothing else in the crate, so every other file may import it without
//!   making a circle.
//! - The variant says which step failed: opening, migrating, a statement, or decoding what was
//!   stored. Messages carry no personal data (keys and ids only, never payloads).

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store: {0}")]
    Open(String),
    #[error("store migration failed: {0}")]
    Migrate(String),
    #[error("store query failed: {0}")]
    Query(String),
    #[error("stored data is malformed: {0}")]
    Malformed(String),
    /// A value above its size cap was refused before anything was written.
    #[error("{what} is {size} bytes, above the cap of {cap} bytes; nothing was stored")]
    TooLarge {
        what: String,
        size: usize,
        cap: usize,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;
