//! A strict RFC 3161 time-stamp authority sandbox over HTTP: `POST /tsa` with
//! `Content-Type: application/timestamp-query` answers `application/timestamp-reply`, signed by
//! the example TSA of `certs-example/` through `openssl ts -reply` (so the tokens are OpenSSL's
//! own, not ours).
//!
//! Strict: only POST (405 otherwise), only `application/timestamp-query` (415), a query OpenSSL
//! cannot parse is a 400. Faults on demand ([`TsaMode`]): down (503), a rejection
//! (`PKIStatus` rejection in a 200), or a *forged* token: well formed, but signed by a
//! self-made "TSA" no trust store knows.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

/// How the authority answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsaMode {
    /// Valid tokens from the example TSA.
    Ok,
    /// HTTP 503.
    Down,
    /// HTTP 200 with a `TimeStampResp` whose status is rejection (2).
    Reject,
    /// A token signed by an unknown, self-made TSA certificate.
    Forge,
}

struct Inner {
    mode: Mutex<TsaMode>,
    dir: PathBuf,
    served: AtomicU64,
    /// `openssl ts -reply` keeps a serial file: one at a time.
    lock: Mutex<()>,
}

/// A running TSA sandbox; stops with the runtime. Its files live in a temporary directory that
/// is removed on drop.
pub struct Tsa {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
}

impl Drop for Tsa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.inner.dir);
    }
}

pub use crate::examples::certs_example;

/// Why the sandbox could not start or sign a reply; one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum TsaError {
    #[error("{what}: {source}")]
    Files {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("openssl: {0}")]
    OpensslMissing(#[source] std::io::Error),
    #[error("openssl {command}: {stderr}")]
    Openssl { command: String, stderr: String },
    #[error("{0}")]
    Listen(#[source] std::io::Error),
}

fn files(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> TsaError {
    move |source| TsaError::Files {
        what: what.to_string(),
        source,
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), TsaError> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(TsaError::OpensslMissing)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TsaError::Openssl {
            command: args.first().unwrap_or(&"").to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

impl Tsa {
    /// Start on `127.0.0.1:<port>` (0 = any free port), answering valid tokens.
    pub async fn start(port: u16) -> Result<Tsa, TsaError> {
        let dir = std::env::temp_dir().join(format!(
            "gw-tsa-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let good = dir.join("good");
        let forged = dir.join("forged");
        for d in [&good, &forged] {
            std::fs::create_dir_all(d).map_err(files(d.display()))?;
        }
        let ex = certs_example();
        for f in ["tsa.cnf", "tsa.pem", "tsa.key", "chain.pem"] {
            std::fs::copy(ex.join(f), good.join(f)).map_err(files(f))?;
        }
        // The forger: same configuration, a self-signed certificate with the right usage.
        std::fs::copy(ex.join("tsa.cnf"), forged.join("tsa.cnf")).map_err(files("tsa.cnf"))?;
        openssl(
            &forged,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "tsa.key",
                "-out",
                "tsa.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Forged TSA",
                "-addext",
                "extendedKeyUsage=critical,timeStamping",
            ],
        )?;
        std::fs::copy(forged.join("tsa.pem"), forged.join("chain.pem"))
            .map_err(files("chain.pem"))?;
        let inner = Arc::new(Inner {
            mode: Mutex::new(TsaMode::Ok),
            dir,
            served: AtomicU64::new(0),
            lock: Mutex::new(()),
        });
        let app = Router::new()
            .route("/tsa", post(stamp))
            .with_state(inner.clone());
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(TsaError::Listen)?;
        let addr = l.local_addr().map_err(TsaError::Listen)?;
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Ok(Tsa { inner, addr })
    }

    pub fn url(&self) -> String {
        format!("http://{}/tsa", self.addr)
    }

    pub fn set_mode(&self, mode: TsaMode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    /// Tokens issued (valid or forged).
    pub fn served(&self) -> u64 {
        self.inner.served.load(Ordering::Relaxed)
    }

    /// The forger's certificate (PEM), to build a trust store that accepts its tokens.
    pub fn forged_cert_pem(&self) -> Vec<u8> {
        std::fs::read(self.inner.dir.join("forged/tsa.pem")).unwrap_or_default()
    }

    /// Sign a query with the forger, outside HTTP (to plant a forged token in a test).
    pub fn forge(&self, query_der: &[u8]) -> Result<Vec<u8>, TsaError> {
        reply(&self.inner, &self.inner.dir.join("forged"), query_der)
    }
}

fn reply(inner: &Inner, dir: &Path, query: &[u8]) -> Result<Vec<u8>, TsaError> {
    let _one = inner.lock.lock().unwrap();
    let q = dir.join("q.tsq");
    let r = dir.join("r.tsr");
    std::fs::write(&q, query).map_err(files("q.tsq"))?;
    let _ = std::fs::remove_file(&r);
    openssl(
        dir,
        &[
            "ts",
            "-reply",
            "-config",
            "tsa.cnf",
            "-queryfile",
            "q.tsq",
            "-out",
            "r.tsr",
        ],
    )?;
    std::fs::read(&r).map_err(files("r.tsr"))
}

async fn stamp(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ctype != "application/timestamp-query" {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/timestamp-query",
        )
            .into_response();
    }
    let mode = *inner.mode.lock().unwrap();
    let sub = match mode {
        TsaMode::Down => return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
        // TimeStampResp { status PKIStatusInfo { status rejection(2) } }
        TsaMode::Reject => return reply_der(vec![0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02]),
        TsaMode::Ok => "good",
        TsaMode::Forge => "forged",
    };
    let dir = inner.dir.join(sub);
    let inner2 = inner.clone();
    let answer = tokio::task::spawn_blocking(move || reply(&inner2, &dir, &body)).await;
    match answer {
        Ok(Ok(der)) => {
            inner.served.fetch_add(1, Ordering::Relaxed);
            reply_der(der)
        }
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn reply_der(der: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/timestamp-reply")], der).into_response()
}
