//! Standard Webhooks (<https://www.standardwebhooks.com/>) signing: `webhook-id`,
//! `webhook-timestamp`, `webhook-signature`.
//!
//! # Invariants
//! - The signed content is `{id}.{timestamp}.{body}`, HMAC-SHA256 with the secret's bytes (the
//!   base64 after `whsec_`); the header is `v1,<base64>`, one per secret, space-separated.
//! - A secret that is not `whsec_` + base64 is refused when settings are read, never used.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// Why a webhook secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the secret does not start with whsec_")]
    Prefix,
    #[error("the secret after whsec_ is not base64")]
    Base64,
    #[error("the secret is shorter than 24 bytes")]
    Short,
    #[error("HMAC: {detail}")]
    Hmac { detail: String },
}

/// A Standard Webhooks secret's key bytes.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

impl WebhookSecret {
    /// Read `whsec_<base64>`.
    pub fn parse(s: &str) -> Result<Self, WebhookError> {
        let b = s
            .trim()
            .strip_prefix("whsec_")
            .ok_or(WebhookError::Prefix)?;
        let key = B64.decode(b).map_err(|_| WebhookError::Base64)?;
        if key.len() < 24 {
            return Err(WebhookError::Short);
        }
        Ok(WebhookSecret(key))
    }

    /// `v1,<base64 HMAC-SHA256 of id.timestamp.body>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Result<String, WebhookError> {
        let hmac = |e: openssl::error::ErrorStack| WebhookError::Hmac {
            detail: e.to_string(),
        };
        let key = PKey::hmac(&self.0).map_err(hmac)?;
        let mut s = Signer::new(MessageDigest::sha256(), &key).map_err(hmac)?;
        s.update(format!("{id}.{timestamp}.").as_bytes())
            .map_err(hmac)?;
        s.update(body).map_err(hmac)?;
        Ok(format!("v1,{}", B64.encode(s.sign_to_vec().map_err(hmac)?)))
    }
}

/// The three headers, signed with every secret.
pub fn headers(
    secrets: &[WebhookSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<Vec<(String, String)>, WebhookError> {
    let sigs = secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![
        ("webhook-id".into(), id.to_string()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        ("webhook-signature".into(), sigs.join(" ")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the Standard Webhooks reference libraries.
    #[test]
    fn signs_the_reference_vector() {
        let s = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = s
            .sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#,
            )
            .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn one_signature_per_secret_and_bad_secrets_refused() {
        let a = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let b = WebhookSecret::parse(&format!("whsec_{}", B64.encode([7u8; 32]))).unwrap();
        let h = headers(&[a, b], "m1", 1, b"{}").unwrap();
        assert_eq!(h[0], ("webhook-id".into(), "m1".into()));
        let sigs: Vec<_> = h[2].1.split(' ').collect();
        assert_eq!(sigs.len(), 2);
        assert_ne!(sigs[0], sigs[1]);
        assert!(sigs.iter().all(|s| s.starts_with("v1,")));
        assert_eq!(
            WebhookSecret::parse("MfKQ").unwrap_err(),
            WebhookError::Prefix
        );
        assert_eq!(
            WebhookSecret::parse("whsec_!!").unwrap_err(),
            WebhookError::Base64
        );
        assert_eq!(
            WebhookSecret::parse("whsec_YWJj").unwrap_err(),
            WebhookError::Short
        );
        assert!(!format!(
            "{:?}",
            WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
        )
        .contains("MfKQ"));
    }
}
