//! The signing hook of a route: what an adapter's signing profile does to an outgoing request
//! just before it is sent. The `gw-crypto` crate provides the schemes; a profile wires one of
//! them to an adapter's keys (loaded once at start).
//!
//! # Invariants
//! - Signing happens after translation and before sending, on the exact bytes that are sent.
//! - A signing failure is never "send unsigned": the attempt fails and is retried (a key that
//!   cannot be read is a configuration fault an operator can fix).

use async_trait::async_trait;

use crate::transport::client::OutRequest;

#[async_trait]
pub trait SigningProfile: Send + Sync + 'static {
    /// A short name for logs (`none`, `jws-es256`, …).
    fn name(&self) -> &str;
    /// Sign the request (add headers, wrap or change the body).
    async fn sign(&self, req: OutRequest) -> Result<OutRequest, String>;
}

/// No signature: the request goes as it is.
pub struct Unsigned;

#[async_trait]
impl SigningProfile for Unsigned {
    fn name(&self) -> &str {
        "none"
    }
    async fn sign(&self, req: OutRequest) -> Result<OutRequest, String> {
        Ok(req)
    }
}
