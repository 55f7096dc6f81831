//! The outgoing side's contract: [`SigningProfile`], what a connector calls on each request
//! just before sending it, and [`Unsigned`], the profile of adapters that sign nothing.
//!
//! # Invariants
//! - The request a profile returns is exactly what the client sends; nothing changes it
//!   afterwards.
//! - A failed [`SigningProfile::sign`] is never "send unsigned": the caller fails the attempt.
//! - This file imports only [`super::error`] (and the transport's request type); the signers
//!   ([`super::outbound`]) implement it.

use async_trait::async_trait;

use super::error::SignError;
use crate::transport::client::OutRequest;

#[async_trait]
pub trait SigningProfile: Send + Sync + 'static {
    /// A short name for logs (`none`, `jws-es256`, …).
    fn name(&self) -> &str;
    /// Sign the request (add headers, wrap or change the body).
    async fn sign(&self, req: OutRequest) -> Result<OutRequest, SignError>;
    /// The key this profile signs with, for a party whose documents are signed rather than
    /// its requests (the document axis signs each edXML envelope). Default: none.
    fn signing_key(&self) -> Option<&gw_crypto::keys::SigningKey> {
        None
    }
}

/// No signature: the request goes as it is.
pub struct Unsigned;

#[async_trait]
impl SigningProfile for Unsigned {
    fn name(&self) -> &str {
        "none"
    }
    async fn sign(&self, req: OutRequest) -> Result<OutRequest, SignError> {
        Ok(req)
    }
}
