//! SQLite store (placeholder: being written).
use crate::*;

pub struct SqliteStore {}

impl SqliteStore {
    pub fn open(_path: &str) -> Result<Self> {
        Err(StoreError::Open("not yet written".into()))
    }
}
