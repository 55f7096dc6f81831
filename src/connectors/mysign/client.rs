//! One authenticated MySign call: the official's token, the call, one re-login on 401.

use serde_json::Value;

use super::session::Sessions;
use super::settings::Settings;
use crate::connectors::signer::SignerError;
use crate::transport::stack::{Auth, Reply};

/// Call `path` as `user`; a 401 renews the token once and repeats the call once.
pub(super) async fn call(
    s: &Settings,
    sessions: &Sessions,
    step: &'static str,
    user: &str,
    path: &str,
    body: &Value,
) -> Result<Reply, SignerError> {
    let url = format!("{}{path}", s.url);
    let mut renewed = false;
    loop {
        let token = sessions.token(s, user).await?;
        let reply = s
            .link
            .post(step, &url, body, Auth::Bearer(&token), &[])
            .await?;
        if reply.status == 401 {
            sessions.invalidate(user, &token).await;
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
