//! One authenticated CSC call: the token, the call, one renewal on 401.

use serde_json::Value;

use super::session;
use super::settings::Settings;
use crate::connectors::signer::SignerError;
use crate::transport::stack::{Auth, Reply};

pub(super) async fn call(
    s: &Settings,
    step: &'static str,
    op: &str,
    body: &Value,
) -> Result<Reply, SignerError> {
    let url = format!("{}/{op}", s.url);
    let mut renewed = false;
    loop {
        let token = session::token(s).await?;
        let reply = s
            .link
            .post(step, &url, body, Auth::Bearer(&token), &[])
            .await?;
        if reply.status == 401 {
            session::invalidate(s, &token).await;
            if !renewed {
                renewed = true;
                continue;
            }
            return Err(SignerError::Login {
                service: s.name.clone(),
                detail: "a fresh token was refused (HTTP 401) too".into(),
                retryable: true,
            });
        }
        return Ok(reply);
    }
}
