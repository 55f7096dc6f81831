//! One authenticated call to the portal: build, sign, send, read, classify.
//!
//! # Invariants
//! - When the portal answers "session expired" (a configured code) or the LGSP answers 401,
//!   the credential is renewed and the call repeated **once**; a second expiry is a retryable
//!   failure, never a loop.
//! - The `error_code` is read from the whole answer body (the attempt keeps only its start),
//!   so a large answer is not mistaken for a malformed one.
//! - Every call goes through the adapter's [`HttpClient`] (quota, 429 back-off, evidence).

use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::request::{self, Credential};
use super::response::{body_decision, error_code, failed, request_build};
use super::session::Credentials;
use super::settings::Settings;
use super::translate::ProcedureTable;
use crate::connectors::connector::Attempted;
use crate::model::outcome::{classify, health};
use crate::signing::SigningProfile;
use crate::transport::client::HttpClient;

/// What a connector and its batchers share.
pub(super) struct Inner {
    pub(super) name: String,
    pub(super) settings: Settings,
    pub(super) client: HttpClient,
    pub(super) credentials: Credentials,
    pub(super) procedures: ProcedureTable,
    pub(super) signing: Arc<dyn SigningProfile>,
}

/// An attempt, the portal's `error_code` when it gave one, and the whole answer parsed.
pub(super) type Called = (Attempted, Option<String>, Option<Value>);

impl Inner {
    /// One call with authentication; renews an expired session once. Returns the attempt and
    /// the portal's `error_code` when it gave one.
    pub(super) async fn call(
        &self,
        service: &str,
        url: &str,
        fields: serde_json::Map<String, Value>,
    ) -> (Attempted, Option<String>) {
        let (attempted, code, _) = self.call_full(service, url, fields).await;
        (attempted, code)
    }

    /// [`Inner::call`], also returning the whole answer body parsed.
    pub(super) async fn call_full(
        &self,
        service: &str,
        url: &str,
        fields: serde_json::Map<String, Value>,
    ) -> Called {
        self.call_items(service, url, &fields, None).await
    }

    /// [`Inner::call_full`] with a batch's `data` items by reference (written into the body
    /// as they are, not copied into `fields`).
    pub(super) async fn call_items(
        &self,
        service: &str,
        url: &str,
        fields: &serde_json::Map<String, Value>,
        data: Option<&[&Value]>,
    ) -> Called {
        let bearer = self.credentials.is_bearer();
        let mut renewed = false;
        loop {
            let token = match self
                .credentials
                .credential(&self.client, &self.settings)
                .await
            {
                Ok(t) => t,
                Err(a) => return (a, None, None),
            };
            let credential = if bearer {
                Credential::Bearer(&token)
            } else {
                Credential::Session(&token)
            };
            let req = request::call(
                url,
                &self.settings.unit_code,
                service,
                credential,
                fields,
                data,
            );
            let req = match self.signing.sign(req).await {
                Ok(r) => r,
                Err(e) => {
                    return (
                        failed(request_build(), &format!("signing failed: {e}")),
                        None,
                        None,
                    )
                }
            };
            let request_digest = hex::encode(Sha256::digest(&req.body));
            let (answer, latency, full) = self.client.post_full(&req).await;
            let parsed: Option<Value> = full.and_then(|b| serde_json::from_slice(&b).ok());
            let code = parsed.as_ref().and_then(error_code);
            // A bearer token the platform no longer accepts: refresh it once, like a session.
            if bearer && answer.status() == Some(401) {
                self.credentials.invalidate(&token).await;
                if !renewed {
                    renewed = true;
                    continue;
                }
            }
            if let Some(c) = &code {
                if self.settings.expired.iter().any(|e| e == c) {
                    self.credentials.invalidate(&token).await;
                    if !renewed {
                        renewed = true;
                        continue;
                    }
                }
            }
            let s = &self.settings;
            let decision = classify(&answer, |_| {
                body_decision(parsed.as_ref(), code.as_deref(), |c| {
                    s.retryable.iter().any(|r| r == c) || s.expired.iter().any(|r| r == c)
                })
            });
            return (
                Attempted {
                    health: health(&answer),
                    answer,
                    decision,
                    latency,
                    request_digest,
                },
                code,
                parsed,
            );
        }
    }
}
