//! TLS to PostgreSQL: [`PgTls`] (rustls, `sslmode=verify-full` semantics) and the `sslmode`
//! a store URL may carry.
//!
//! # Invariants
//! - **Verify-full or nothing.** With a [`PgTls`], the server's certificate must chain to one of
//!   the CA certificates given (and only those: no system trust store), and must be valid for
//!   the host name of the URL (an IP address is checked against the certificate's IP SANs).
//!   A connection that fails either check is never used.
//! - `sslmode=require` and `sslmode=verify-ca` are refused, not downgraded: `require` encrypts
//!   without checking who answers (anyone on the path can present a certificate), and
//!   `verify-ca` accepts any certificate the CA ever issued, for any host. Neither is what an
//!   operator asking for TLS means, so the URL must say `verify-full` (or `disable`).
//! - A handshake failure names the certificate problem in plain words ([`explain`]), never
//!   just "handshake failed".
//! - Key material never reaches `Debug` output or error messages; paths do.
//!
//! One file, one role: building the rustls client configuration and reading `sslmode`.
//! The connector itself is `tokio-postgres-rustls` (it also provides SCRAM channel binding,
//! `tls-server-end-point`, which a connector of our own would have to re-implement).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_postgres_rustls::MakeRustlsConnect;

/// A TLS configuration could not be built from its files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA file {path}: {why}")]
    ReadCa { path: PathBuf, why: String },
    #[error("the CA file {path} holds no PEM certificate")]
    NoCa { path: PathBuf },
    #[error("a certificate of the CA file {path} is not usable as a trust anchor: {why}")]
    BadCa { path: PathBuf, why: String },
    #[error("cannot read the client certificate {path}: {why}")]
    ReadClientCert { path: PathBuf, why: String },
    #[error("cannot read the client key {path}: {why}")]
    ReadClientKey { path: PathBuf, why: String },
    #[error("a client certificate needs its key (and a key its certificate): set both")]
    HalfClientIdentity,
    #[error("the client certificate {cert} and key {key} do not form a usable identity: {why}")]
    BadClientIdentity {
        cert: PathBuf,
        key: PathBuf,
        why: String,
    },
}

/// The files of a TLS client configuration: the CA certificates the server must chain to
/// (PEM, one or more) and, optionally, a client certificate (PEM chain) with its key (PEM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// TLS to PostgreSQL with verify-full semantics (see the module invariants).
#[derive(Clone)]
pub struct PgTls {
    pub(crate) connector: MakeRustlsConnect,
}

impl std::fmt::Debug for PgTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgTls(verify-full)")
    }
}

impl PgTls {
    /// Build from files: every certificate of `ca` is trusted (for PostgreSQL only), and the
    /// client identity, if given, is presented when the server asks for one.
    pub fn from_files(files: &TlsFiles) -> Result<Self, TlsError> {
        let config = client_config(files)?;
        Ok(Self {
            connector: MakeRustlsConnect::new(config),
        })
    }
}

/// A rustls client configuration trusting only `files.ca` (shared with the AMQP client's needs
/// by shape, not by code: each crate builds its own).
pub fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, TlsError> {
    let roots = read_roots(&files.ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::BadCa {
            path: files.ca.clone(),
            why: e.to_string(),
        })?
        .with_root_certificates(roots);
    match (&files.client_cert, &files.client_key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert).map_err(|why| TlsError::ReadClientCert {
                path: cert.clone(),
                why,
            })?;
            let pk = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::ReadClientKey {
                path: key.clone(),
                why: e.to_string(),
            })?;
            builder
                .with_client_auth_cert(chain, pk)
                .map_err(|e| TlsError::BadClientIdentity {
                    cert: cert.clone(),
                    key: key.clone(),
                    why: e.to_string(),
                })
        }
        _ => Err(TlsError::HalfClientIdentity),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::ReadCa {
            path: path.to_owned(),
            why: e.to_string(),
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::ReadCa {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCa {
            path: path.to_owned(),
        });
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| TlsError::BadCa {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// What a store URL's `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Not given: TLS (verify-full) when a CA is configured, plain otherwise.
    Unset,
    Disable,
    /// `prefer` / `allow`: tokio-postgres's own meaning (plain without a TLS connector).
    Opportunistic,
    VerifyFull,
    /// `require` / `verify-ca`: refused (see the module invariants).
    Weak,
}

impl SslMode {
    /// The mode of a URL's query (`sslmode=…`), last one wins as in libpq.
    pub fn of_url(url: &str) -> (SslMode, Option<String>) {
        let mut mode = (SslMode::Unset, None);
        if let Some((_, query)) = url.split_once('?') {
            for param in query.split('&') {
                if let Some(v) = param.strip_prefix("sslmode=") {
                    let m = match v {
                        "disable" => SslMode::Disable,
                        "prefer" | "allow" => SslMode::Opportunistic,
                        "verify-full" => SslMode::VerifyFull,
                        _ => SslMode::Weak,
                    };
                    mode = (m, Some(v.to_owned()));
                }
            }
        }
        mode
    }

    /// Whether a URL with this mode, connecting with or without a CA configured, crosses the
    /// network in clear text.
    pub fn is_plain(self, ca_configured: bool) -> bool {
        match self {
            SslMode::VerifyFull | SslMode::Weak => false,
            SslMode::Unset => !ca_configured,
            SslMode::Disable | SslMode::Opportunistic => true,
        }
    }
}

/// Remove every `sslmode=` parameter (tokio-postgres knows neither `verify-full` nor
/// `verify-ca`; the mode is applied through the connector instead).
pub(crate) fn strip_sslmode(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("sslmode="))
        .collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// Plain words for a TLS failure found in `e`'s chain of causes, if it is one: which check of
/// the server's certificate failed, with the fix. `None` when no rustls error is in the chain.
pub fn explain(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(r) = inner.downcast_ref::<rustls::Error>() {
                    return Some(words(r));
                }
            }
        }
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(words(r));
        }
        cur = err.source();
    }
    None
}

fn words(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => format!(
                "the server's certificate is not issued by a CA in the configured CA file \
                 (wrong CA file, or the server presents another certificate) [{e}]"
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "the server's certificate is not valid for the host name in the URL \
                 (connect by a name or address listed in its subjectAltName) [{e}]"
            ),
            C::Expired | C::ExpiredContext { .. } => {
                format!("the server's certificate has expired [{e}]")
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                format!("the server's certificate is not valid yet (check the clocks) [{e}]")
            }
            C::Revoked => format!("the server's certificate is revoked [{e}]"),
            _ => format!("the server's certificate was refused [{e}]"),
        },
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => format!(
            "the server asks for a client certificate: set store.client_cert and \
             store.client_key [{e}]"
        ),
        other => format!("TLS failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_read_and_stripped() {
        assert_eq!(SslMode::of_url("postgres://h/db").0, SslMode::Unset);
        assert_eq!(
            SslMode::of_url("postgres://h/db?sslmode=verify-full").0,
            SslMode::VerifyFull
        );
        assert_eq!(
            SslMode::of_url("postgres://h/db?sslmode=require").0,
            SslMode::Weak
        );
        assert_eq!(
            SslMode::of_url("postgres://h/db?sslmode=verify-ca").0,
            SslMode::Weak
        );
        assert_eq!(
            SslMode::of_url("postgres://h/db?sslmode=disable&x=1").0,
            SslMode::Disable
        );
        assert_eq!(
            strip_sslmode("postgres://h/db?a=1&sslmode=verify-full&b=2"),
            "postgres://h/db?a=1&b=2"
        );
        assert_eq!(
            strip_sslmode("postgres://h/db?sslmode=verify-full"),
            "postgres://h/db"
        );
        assert!(SslMode::Unset.is_plain(false));
        assert!(!SslMode::Unset.is_plain(true));
        assert!(SslMode::Disable.is_plain(true));
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let files = |ca: &Path| TlsFiles {
            ca: ca.to_owned(),
            ..TlsFiles::default()
        };
        let e = PgTls::from_files(&files(&dir.path().join("missing.pem"))).unwrap_err();
        assert!(matches!(e, TlsError::ReadCa { .. }), "{e}");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let e = PgTls::from_files(&files(&empty)).unwrap_err();
        assert!(matches!(e, TlsError::NoCa { .. }), "{e}");
        let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../certs-example");
        let half = TlsFiles {
            ca: certs.join("root-ca.pem"),
            client_cert: Some(certs.join("client.pem")),
            client_key: None,
        };
        assert!(matches!(
            PgTls::from_files(&half).unwrap_err(),
            TlsError::HalfClientIdentity
        ));
        let wrong_key = TlsFiles {
            ca: certs.join("root-ca.pem"),
            client_cert: Some(certs.join("client.pem")),
            client_key: Some(certs.join("server.key")),
        };
        let e = PgTls::from_files(&wrong_key).unwrap_err();
        assert!(matches!(e, TlsError::BadClientIdentity { .. }), "{e}");
        let good = TlsFiles {
            ca: certs.join("root-ca.pem"),
            client_cert: Some(certs.join("client.pem")),
            client_key: Some(certs.join("client.key")),
        };
        PgTls::from_files(&good).unwrap();
    }
}
