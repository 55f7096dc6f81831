//! TLS to RabbitMQ (`amqps://`): [`AmqpTls`], the CA the broker's certificate must chain to and
//! an optional client certificate.
//!
//! # Invariants
//! - Only the configured CA is trusted: the client is built without any system or bundled
//!   root store (lapin's `rustls--ring` plus tcp-stream's bare `rustls-futures`), so an
//!   `amqps://` URL without an [`AmqpTls`] can reach no server at all, and `amqps://` always
//!   checks the certificate's chain and that it names the URL's host.
//! - The files are read and checked when an [`AmqpTls`] is built (configuration time), not at
//!   the first connection: a missing or empty CA file, an unparsable key, or half a client
//!   identity is an [`AmqpTlsError`] naming the file.
//! - A handshake refusal is reported with the certificate problem in plain words
//!   ([`explain`]); key material never reaches `Debug` output or messages.

use std::path::{Path, PathBuf};

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The TLS files of an `amqps://` broker could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AmqpTlsError {
    #[error("cannot read the broker CA file {path}: {why}")]
    ReadCa { path: PathBuf, why: String },
    #[error("the broker CA file {path} holds no PEM certificate")]
    NoCa { path: PathBuf },
    #[error("cannot read the broker client certificate {path}: {why}")]
    ReadClientCert { path: PathBuf, why: String },
    #[error("cannot read the broker client key {path}: {why}")]
    ReadClientKey { path: PathBuf, why: String },
    #[error("a broker client certificate needs its key (and a key its certificate): set both")]
    HalfClientIdentity,
}

/// TLS settings of an `amqps://` connection.
#[derive(Clone)]
pub struct AmqpTls {
    pub(super) config: OwnedTLSConfig,
}

impl std::fmt::Debug for AmqpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AmqpTls(ca, client certificate: {})",
            self.config.identity.is_some()
        )
    }
}

impl AmqpTls {
    /// Trust the CA certificates of `ca` (PEM); present `client = (certificate chain PEM,
    /// PKCS#8/PKCS#1/SEC1 key PEM)` when the broker asks for a client certificate.
    pub fn from_files(
        ca: &Path,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<Self, AmqpTlsError> {
        let pem = std::fs::read_to_string(ca).map_err(|e| AmqpTlsError::ReadCa {
            path: ca.to_owned(),
            why: e.to_string(),
        })?;
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AmqpTlsError::ReadCa {
                path: ca.to_owned(),
                why: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(AmqpTlsError::NoCa {
                path: ca.to_owned(),
            });
        }
        let identity = match (client_cert, client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let cert_pem = std::fs::read(cert).map_err(|e| AmqpTlsError::ReadClientCert {
                    path: cert.to_owned(),
                    why: e.to_string(),
                })?;
                let n = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| AmqpTlsError::ReadClientCert {
                        path: cert.to_owned(),
                        why: e.to_string(),
                    })?
                    .len();
                if n == 0 {
                    return Err(AmqpTlsError::ReadClientCert {
                        path: cert.to_owned(),
                        why: "no PEM certificate in it".into(),
                    });
                }
                let key_pem = std::fs::read(key).map_err(|e| AmqpTlsError::ReadClientKey {
                    path: key.to_owned(),
                    why: e.to_string(),
                })?;
                PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                    AmqpTlsError::ReadClientKey {
                        path: key.to_owned(),
                        why: e.to_string(),
                    }
                })?;
                Some(OwnedIdentity::PKCS8 {
                    pem: cert_pem,
                    key: key_pem,
                })
            }
            _ => return Err(AmqpTlsError::HalfClientIdentity),
        };
        Ok(Self {
            config: OwnedTLSConfig {
                identity,
                cert_chain: Some(pem),
            },
        })
    }
}

/// Plain words for a connection refused after a TLS handshake without a client certificate:
/// under TLS 1.3 a broker that requires one sends its refusal after the client has finished the
/// handshake, so the client often sees only the connection reset or closed, not the alert.
/// `None` unless `e`'s causes hold such a reset and no client certificate was configured.
pub(super) fn explain_closed(
    e: &(dyn std::error::Error + 'static),
    has_client_certificate: bool,
) -> Option<String> {
    use std::io::ErrorKind as K;
    if has_client_certificate {
        return None;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe
            ) {
                return Some(format!(
                    "TLS to RabbitMQ refused: the broker closed the connection after the TLS \
                     handshake, which is how a broker that asks for a client certificate \
                     refuses a client without one (TLS 1.3): if it does, set \
                     broker.client_cert and broker.client_key [{io}]"
                ));
            }
        }
        cur = err.source();
    }
    None
}

/// Plain words for a TLS refusal found in `e`'s chain of causes, with the fix; `None` when
/// there is no rustls error in it.
pub(super) fn explain(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let found = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(r) = found {
            return Some(words(r));
        }
        cur = err.source();
    }
    None
}

fn words(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let what = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => {
                "the broker's certificate is not issued by a CA in the configured CA file \
                 (broker.ca)"
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the broker's certificate is not valid for the host name in the URL (connect \
                 by a name or address listed in its subjectAltName)"
            }
            C::Expired | C::ExpiredContext { .. } => "the broker's certificate has expired",
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the broker's certificate is not valid yet (check the clocks)"
            }
            _ => "the broker's certificate was refused",
        },
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            "the broker asks for a client certificate: set broker.client_cert and \
             broker.client_key"
        }
        rustls::Error::AlertReceived(
            rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::CertificateUnknown,
        ) => "the broker refused our client certificate (is it issued by the CA it trusts?)",
        _ => "TLS to the broker failed",
    };
    format!("TLS to RabbitMQ refused: {what} [{e}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certs() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../certs-example")
    }

    /// A reset after the handshake, without a client certificate configured, is explained as
    /// the refusal it usually is (TLS 1.3 sends the broker's alert after the client finished);
    /// with a client certificate, or for another I/O failure, nothing is guessed.
    #[test]
    fn a_reset_without_a_client_certificate_names_the_fix() {
        use std::io::{Error, ErrorKind};
        let reset = lapin::Error::from(lapin::ErrorKind::IOError(std::sync::Arc::new(
            Error::from(ErrorKind::ConnectionReset),
        )));
        let words = explain_closed(&reset, false).expect("explained");
        assert!(
            words.contains("asks for a client certificate") && words.contains("broker.client_cert"),
            "{words}"
        );
        assert_eq!(explain_closed(&reset, true), None);
        let refused = lapin::Error::from(lapin::ErrorKind::IOError(std::sync::Arc::new(
            Error::from(ErrorKind::ConnectionRefused),
        )));
        assert_eq!(explain_closed(&refused, false), None);
    }

    #[test]
    fn files_are_checked_when_built() {
        let c = certs();
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing\n").unwrap();
        assert!(matches!(
            AmqpTls::from_files(&dir.path().join("missing.pem"), None, None),
            Err(AmqpTlsError::ReadCa { .. })
        ));
        assert!(matches!(
            AmqpTls::from_files(&empty, None, None),
            Err(AmqpTlsError::NoCa { .. })
        ));
        assert!(matches!(
            AmqpTls::from_files(&c.join("root-ca.pem"), Some(&c.join("client.pem")), None),
            Err(AmqpTlsError::HalfClientIdentity)
        ));
        assert!(matches!(
            AmqpTls::from_files(
                &c.join("root-ca.pem"),
                Some(&c.join("client.pem")),
                Some(&empty)
            ),
            Err(AmqpTlsError::ReadClientKey { .. })
        ));
        let t = AmqpTls::from_files(
            &c.join("root-ca.pem"),
            Some(&c.join("client.pem")),
            Some(&c.join("client.key")),
        )
        .unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }
}
