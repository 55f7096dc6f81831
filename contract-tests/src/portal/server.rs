//! The running sandbox ([`Portal`]): its router, its listener and its control methods.
//!
//! # Invariants
//!
//! - The listener can be killed and restarted on the same address (connection resets are real
//!   TCP RSTs, see `net.rs`).
//! - The portal endpoints go through [`handle`]; the sandbox
//!   endpoints do not.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

use super::admin::{
    expire_ep, get_catalogue_ep, get_faults_ep, records_ep, set_catalogue_ep, set_faults_ep,
};
use super::answer::Endpoint;
use super::auth::token_ep;
use super::catalogue::{builtin as builtin_catalogue, Catalogue};
use super::config::PortalConfig;
use super::dispatch::handle;
use super::faults::{FaultKind, Faults, RateLimit, Scripted};
use super::net::{Conn, KillableListener};
use super::records::{DossierVersion, Records, Refusal};
use super::services::{SHARING_SERVICES, SVC_PROGRESS, SVC_STATUS, SVC_SYNC_DOSSIER};
use super::state::{Inner, Shared, St};

/// A running portal sandbox.
#[derive(Clone)]
pub struct Portal {
    pub(super) shared: Arc<Shared>,
    pub addr: SocketAddr,
}

impl Portal {
    /// Start on `127.0.0.1:<port>` (0 = any free port).
    pub async fn start(port: u16, cfg: PortalConfig) -> std::io::Result<Portal> {
        let mut inner = Inner {
            records: Records::default(),
            faults: Faults::default(),
            script: VecDeque::new(),
            bucket: None,
            sessions: HashMap::new(),
            tokens: HashMap::new(),
            catalogue: cfg.catalogue.clone().unwrap_or_else(builtin_catalogue),
            online: Vec::new(),
        };
        inner.set_faults(cfg.faults.clone());
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            cfg,
        });
        let c = &shared.cfg;
        let app = Router::new()
            .route(&c.login_path, post(login_ep))
            .route(&c.integration_path, post(integration_ep))
            .route(&c.sharing_path, post(sharing_ep))
            .route(&c.token_path, post(token_ep))
            .route("/_sandbox/records", get(records_ep))
            .route("/_sandbox/faults", get(get_faults_ep).post(set_faults_ep))
            .route("/_sandbox/expire-sessions", post(expire_ep))
            .route(
                "/_sandbox/catalogue",
                get(get_catalogue_ep).post(set_catalogue_ep),
            )
            .with_state(shared.clone());
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(
                KillableListener(l),
                app.into_make_service_with_connect_info::<Conn>(),
            )
            .await;
        });
        Ok(Portal { shared, addr })
    }

    pub(super) fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }

    pub fn config(&self) -> &PortalConfig {
        &self.shared.cfg
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn login_url(&self) -> String {
        format!("{}{}", self.base_url(), self.shared.cfg.login_path)
    }

    pub fn integration_url(&self) -> String {
        format!("{}{}", self.base_url(), self.shared.cfg.integration_path)
    }

    pub fn sharing_url(&self) -> String {
        format!("{}{}", self.base_url(), self.shared.cfg.sharing_path)
    }

    pub fn records(&self) -> Records {
        self.inner().records.clone()
    }

    /// Forget every record (sessions, catalogue and faults stay).
    pub fn clear_records(&self) {
        self.inner().records = Records::default();
    }

    pub fn refused(&self) -> Vec<Refusal> {
        self.inner().records.refused.clone()
    }

    /// Accepted versions of one dossier, in arrival order.
    pub fn dossier_versions(&self, code: &str) -> Vec<DossierVersion> {
        self.inner()
            .records
            .dossiers
            .get(code)
            .cloned()
            .unwrap_or_default()
    }

    pub fn logins(&self) -> u64 {
        self.inner().records.logins
    }

    /// Calls of one service (login under its service name).
    pub fn calls(&self, service: &str) -> u64 {
        self.inner()
            .records
            .calls
            .get(service)
            .copied()
            .unwrap_or(0)
    }

    /// Requests answered 429 by the rate limit.
    /// Requests seen so far, every service and answer included.
    pub fn requests(&self) -> u64 {
        self.inner().records.requests
    }

    pub fn rate_limited(&self) -> u64 {
        self.inner().records.rate_limited
    }

    pub fn faults(&self) -> Faults {
        self.inner().faults.clone()
    }

    /// Replace the faults (and restart the script and the rate limit's bucket).
    pub fn set_faults(&self, f: Faults) {
        self.inner().set_faults(f);
    }

    /// The next `count` calls fail with `kind` (appended to the current script).
    pub fn fail_next(&self, kind: FaultKind, count: u32) {
        let mut g = self.inner();
        g.script.push_back(Scripted { kind, count });
        g.faults.script.push(Scripted { kind, count });
    }

    /// A full outage (`true`) or the recovery (`false`).
    pub fn set_down(&self, down: bool) {
        self.inner().faults.down = down;
    }

    pub fn set_rate_limit(&self, r: Option<RateLimit>) {
        let mut g = self.inner();
        let mut f = g.faults.clone();
        f.rate_limit = r;
        f.script = g.script.iter().copied().collect();
        g.set_faults(f);
    }

    /// Forget every OAuth2 token now (LGSP mode).
    pub fn expire_tokens(&self) {
        self.inner().tokens.clear();
    }

    /// Expire every session now.
    pub fn expire_sessions(&self) {
        self.inner().sessions.clear();
    }

    pub fn catalogue(&self) -> Catalogue {
        self.inner().catalogue.clone()
    }

    pub fn set_catalogue(&self, c: Catalogue) {
        self.inner().catalogue = c;
    }

    /// Change one procedure record in place; false when the code is not in the catalogue.
    pub fn update_procedure(&self, code: &str, f: impl FnOnce(&mut Value)) -> bool {
        let mut g = self.inner();
        let p = g
            .catalogue
            .procedures
            .iter_mut()
            .find(|p| p.get("MATTHC").and_then(Value::as_str) == Some(code));
        match p {
            Some(p) => {
                f(p);
                true
            }
            None => false,
        }
    }

    /// Seed a dossier submitted online (served by `LayDanhSachHoSoTrucTuyen`, [open]); it
    /// should carry `MaHoSo` and `NgayTiepNhan` (`yyyyMMddHHmmss`).
    pub fn add_online_dossier(&self, dossier: Value) {
        self.inner().online.push(dossier);
    }
}

/// Run a sandbox portal with the default settings until Ctrl-C, printing its endpoints
/// (`gateway sandbox portal`).
pub async fn run_standalone(port: u16) -> std::io::Result<()> {
    run_standalone_with(port, PortalConfig::default()).await
}

/// [`run_standalone`] with chosen settings.
pub async fn run_standalone_with(port: u16, cfg: PortalConfig) -> std::io::Result<()> {
    let p = Portal::start(port, cfg.clone()).await?;
    println!("DVCQG portal sandbox listening on {}", p.base_url());
    println!(
        "  login        POST {}  {{\"username\",\"password\"}}",
        p.login_url()
    );
    println!(
        "  integration  POST {}  (service: {}, {SVC_SYNC_DOSSIER}, {SVC_PROGRESS}, {SVC_STATUS})",
        p.integration_url(),
        cfg.login_service
    );
    println!(
        "  sharing      POST {}  (service: {})",
        p.sharing_url(),
        SHARING_SERVICES.join(", ")
    );
    println!(
        "  headers      dstcode: {}, Content-Type: application/json",
        cfg.units.join(" | ")
    );
    println!(
        "  credentials  username {:?}, password {:?}",
        cfg.username, cfg.password
    );
    println!(
        "  sandbox      GET {0}/_sandbox/records, GET|POST {0}/_sandbox/faults, \
         POST {0}/_sandbox/expire-sessions, GET|POST {0}/_sandbox/catalogue",
        p.base_url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}

pub(super) async fn login_ep(st: St, ci: ConnectInfo<Conn>, h: HeaderMap, b: Bytes) -> Response {
    handle(Endpoint::Login, st.0, ci.0, h, b).await
}

pub(super) async fn integration_ep(
    st: St,
    ci: ConnectInfo<Conn>,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    handle(Endpoint::Integration, st.0, ci.0, h, b).await
}

pub(super) async fn sharing_ep(st: St, ci: ConnectInfo<Conn>, h: HeaderMap, b: Bytes) -> Response {
    handle(Endpoint::Sharing, st.0, ci.0, h, b).await
}
