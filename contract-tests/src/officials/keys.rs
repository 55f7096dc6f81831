//! The example officials: who they are at the service (user id, credential id), which
//! certificate of `certs-example/officials/` they hold, and how they behave on the phone.

use std::path::PathBuf;

use openssl::md::Md;
use openssl::pkey::{Id, PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::sign::RsaPssSaltlen;
use openssl::x509::X509;
use serde::{Deserialize, Serialize};

pub use crate::examples::certs_example;

/// How an official answers a request on the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Confirms after the sandbox's `confirm_after`.
    Confirm,
    /// Refuses after `confirm_after`.
    Reject,
    /// Never answers: the request expires after `lifetime`.
    Ignore,
}

/// One official of the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfficialSpec {
    /// The id the service knows the official by (SmartCA / MySign `user_id`, CSC `userID`).
    pub user_id: String,
    /// The credential (CSC `credentialID`, MySign `credentialID`, SmartCA `serial_number`'s
    /// owner): one per official here.
    pub credential_id: String,
    /// The key and certificate in `certs-example/officials/` (`official-rsa`, …).
    pub file: String,
    pub behaviour: Behaviour,
}

fn spec(user: &str, cred: &str, file: &str, behaviour: Behaviour) -> OfficialSpec {
    OfficialSpec {
        user_id: user.into(),
        credential_id: cred.into(),
        file: file.into(),
        behaviour,
    }
}

/// The sandbox's officials (made-up ids, example keys):
///
/// | user id | credential | certificate | on the phone |
/// |---|---|---|---|
/// | `official-rsa` | `cred-rsa` | RSA-2048 (serial 5000) | confirms |
/// | `official-ec` | `cred-ec` | P-256 (5001) | confirms |
/// | `official-ec384` | `cred-ec384` | P-384 (5002) | confirms |
/// | `official-other` | `cred-other` | RSA-2048 (5003) | confirms |
/// | `official-expired` | `cred-expired` | RSA, expired in 2021 (5004) | confirms |
/// | `official-nousage` | `cred-nousage` | RSA, no signing key usage (5005) | confirms |
/// | `official-rejects` | `cred-rejects` | the RSA official's (5000) | rejects |
/// | `official-away` | `cred-away` | the P-256 official's (5001) | never answers |
pub fn default_officials() -> Vec<OfficialSpec> {
    vec![
        spec(
            "official-rsa",
            "cred-rsa",
            "official-rsa",
            Behaviour::Confirm,
        ),
        spec("official-ec", "cred-ec", "official-ec", Behaviour::Confirm),
        spec(
            "official-ec384",
            "cred-ec384",
            "official-ec384",
            Behaviour::Confirm,
        ),
        spec(
            "official-other",
            "cred-other",
            "official-other",
            Behaviour::Confirm,
        ),
        spec(
            "official-expired",
            "cred-expired",
            "official-expired",
            Behaviour::Confirm,
        ),
        spec(
            "official-nousage",
            "cred-nousage",
            "official-nousage",
            Behaviour::Confirm,
        ),
        spec(
            "official-rejects",
            "cred-rejects",
            "official-rsa",
            Behaviour::Reject,
        ),
        spec(
            "official-away",
            "cred-away",
            "official-ec",
            Behaviour::Ignore,
        ),
    ]
}

/// Why an official cannot be loaded or cannot sign.
#[derive(Debug, thiserror::Error)]
pub enum OfficialError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {detail}")]
    Crypto { what: String, detail: String },
}

fn crypto(what: &str) -> impl Fn(openssl::error::ErrorStack) -> OfficialError + '_ {
    move |e| OfficialError::Crypto {
        what: what.into(),
        detail: e.to_string(),
    }
}

/// A digest algorithm the sandbox signs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlg {
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        match self {
            DigestAlg::Sha256 => 32,
            DigestAlg::Sha384 => 48,
            DigestAlg::Sha512 => 64,
        }
    }

    pub fn oid(self) -> &'static str {
        match self {
            DigestAlg::Sha256 => "2.16.840.1.101.3.4.2.1",
            DigestAlg::Sha384 => "2.16.840.1.101.3.4.2.2",
            DigestAlg::Sha512 => "2.16.840.1.101.3.4.2.3",
        }
    }

    /// From an OID, or a name (`SHA256`, `sha-256`, …).
    pub fn parse(s: &str) -> Option<DigestAlg> {
        let n: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect::<String>()
            .to_ascii_lowercase();
        [DigestAlg::Sha256, DigestAlg::Sha384, DigestAlg::Sha512]
            .into_iter()
            .find(|a| a.oid() == s || n == format!("sha{}", a.len() * 8))
    }

    fn md(self) -> &'static openssl::md::MdRef {
        match self {
            DigestAlg::Sha256 => Md::sha256(),
            DigestAlg::Sha384 => Md::sha384(),
            DigestAlg::Sha512 => Md::sha512(),
        }
    }
}

/// A loaded official.
#[derive(Clone)]
pub struct Official {
    pub user_id: String,
    pub credential_id: String,
    pub file: String,
    pub behaviour: Behaviour,
    pub cert_der: Vec<u8>,
    /// The intermediate CA (the root is the relying party's anchor).
    pub chain_der: Vec<Vec<u8>>,
    pub serial_hex: String,
    pub subject: String,
    pub not_before: String,
    pub not_after: String,
    pub is_rsa: bool,
    pub key_bits: u32,
    key: PKey<Private>,
}

impl std::fmt::Debug for Official {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Official")
            .field("user_id", &self.user_id)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Official {
    pub fn load(s: &OfficialSpec) -> Result<Official, OfficialError> {
        let dir = certs_example();
        let read = |p: PathBuf| {
            std::fs::read(&p).map_err(|source| OfficialError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let key = PKey::private_key_from_pem(&read(dir.join(format!("officials/{}.key", s.file)))?)
            .map_err(crypto("the official's key"))?;
        let cert = X509::from_pem(&read(dir.join(format!("officials/{}.pem", s.file)))?)
            .map_err(crypto("the official's certificate"))?;
        let inter = X509::from_pem(&read(dir.join("intermediate-ca.pem"))?)
            .map_err(crypto("the intermediate CA"))?;
        let serial_hex = cert
            .serial_number()
            .to_bn()
            .and_then(|b| b.to_hex_str().map(|s| s.to_string()))
            .map_err(crypto("the serial"))?;
        let subject = cert
            .subject_name()
            .entries()
            .map(|e| {
                format!(
                    "{}={}",
                    e.object().nid().short_name().unwrap_or("?"),
                    e.data().to_string().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Official {
            user_id: s.user_id.clone(),
            credential_id: s.credential_id.clone(),
            file: s.file.clone(),
            behaviour: s.behaviour,
            cert_der: cert.to_der().map_err(crypto("DER"))?,
            chain_der: vec![inter.to_der().map_err(crypto("DER"))?],
            serial_hex,
            subject,
            not_before: cert.not_before().to_string(),
            not_after: cert.not_after().to_string(),
            is_rsa: key.id() == Id::RSA,
            key_bits: key.bits(),
            key,
        })
    }

    /// Whether `oid` (a CSC / MySign `signAlgo`) is a signature this official's key makes:
    /// `Some(pss)` when it is (RSA: rsaEncryption, sha*WithRSAEncryption, RSASSA-PSS; ECDSA:
    /// id-ecPublicKey, ecdsa-with-SHA*).
    pub fn sign_algo(&self, oid: &str) -> Option<bool> {
        const RSA: [&str; 4] = [
            "1.2.840.113549.1.1.1",
            "1.2.840.113549.1.1.11",
            "1.2.840.113549.1.1.12",
            "1.2.840.113549.1.1.13",
        ];
        const PSS: &str = "1.2.840.113549.1.1.10";
        const EC: [&str; 4] = [
            "1.2.840.10045.2.1",
            "1.2.840.10045.4.3.2",
            "1.2.840.10045.4.3.3",
            "1.2.840.10045.4.3.4",
        ];
        match (self.is_rsa, oid) {
            (true, PSS) => Some(true),
            (true, o) if RSA.contains(&o) => Some(false),
            (false, o) if EC.contains(&o) => Some(false),
            _ => None,
        }
    }

    /// The key's `signAlgo` OIDs, as `credentials/info` lists them.
    pub fn sign_algos(&self) -> Vec<&'static str> {
        if self.is_rsa {
            vec![
                "1.2.840.113549.1.1.11",
                "1.2.840.113549.1.1.12",
                "1.2.840.113549.1.1.13",
                "1.2.840.113549.1.1.10",
            ]
        } else {
            vec![
                "1.2.840.10045.4.3.2",
                "1.2.840.10045.4.3.3",
                "1.2.840.10045.4.3.4",
            ]
        }
    }

    /// Sign `digest` as a digest of `alg` (prehashed): RSA PKCS#1 v1.5 (or PSS), ECDSA (DER).
    pub fn sign_digest(
        &self,
        digest: &[u8],
        alg: DigestAlg,
        pss: bool,
    ) -> Result<Vec<u8>, OfficialError> {
        let mut ctx = PkeyCtx::new(&self.key).map_err(crypto("sign"))?;
        ctx.sign_init().map_err(crypto("sign"))?;
        ctx.set_signature_md(alg.md()).map_err(crypto("sign"))?;
        if self.is_rsa {
            if pss {
                ctx.set_rsa_padding(Padding::PKCS1_PSS)
                    .map_err(crypto("sign"))?;
                ctx.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
                    .map_err(crypto("sign"))?;
            } else {
                ctx.set_rsa_padding(Padding::PKCS1)
                    .map_err(crypto("sign"))?;
            }
        }
        let mut out = Vec::new();
        ctx.sign_to_vec(digest, &mut out).map_err(crypto("sign"))?;
        Ok(out)
    }
}
