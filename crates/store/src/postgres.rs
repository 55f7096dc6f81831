//! PostgreSQL store (placeholder: being written).
use crate::*;

pub struct PgStore {}

impl PgStore {
    pub async fn connect(_url: &str) -> Result<Self> {
        Err(StoreError::Open("not yet written".into()))
    }
}
