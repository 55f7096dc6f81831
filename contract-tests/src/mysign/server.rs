//! The running MySign sandbox: router, listener, control methods.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;

use super::api::{certificates_ep, sign_hash_ep, status_ep};
use super::auth::login_ep;
use super::config::MySignConfig;
use crate::officials::{Core, OfficialError, SignFaults, SignRecords};

pub(super) use super::state::{Shared, St};

/// A running MySign sandbox.
#[derive(Clone)]
pub struct MySign {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
}

/// Why the sandbox cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Officials(#[from] OfficialError),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
}

impl MySign {
    pub async fn start(port: u16, cfg: MySignConfig) -> Result<MySign, StartError> {
        let core = Core::new(&cfg.officials, cfg.confirm_after, cfg.lifetime, cfg.seed)?;
        let shared = Arc::new(Shared {
            cfg,
            core: Arc::new(Mutex::new(core)),
            tokens: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/vtss/service/ras/v1/login", post(login_ep))
            .route("/vtss/service/certificates/info", post(certificates_ep))
            .route("/vtss/service/signHash", post(sign_hash_ep))
            .route("/vtss/service/requests/status", post(status_ep))
            .route("/_sandbox/expire-tokens", post(expire_ep))
            .with_state(shared.clone())
            .merge(crate::officials::http::control_routes(shared.core.clone()));
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Ok(MySign { shared, addr })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn config(&self) -> &MySignConfig {
        &self.shared.cfg
    }

    pub fn records(&self) -> SignRecords {
        self.shared.core.lock().unwrap().records.clone()
    }

    pub fn set_faults(&self, f: SignFaults) {
        self.shared.core.lock().unwrap().faults = f;
    }

    /// Expire every token now (the next call with one gets 401).
    pub fn expire_tokens(&self) {
        self.shared.tokens.lock().unwrap().clear();
    }
}

async fn expire_ep(State(sh): St) -> StatusCode {
    sh.tokens.lock().unwrap().clear();
    StatusCode::NO_CONTENT
}

/// Run the sandbox until Ctrl-C (`gateway sandbox mysign`).
pub async fn run_standalone(port: u16) -> std::io::Result<()> {
    let cfg = MySignConfig {
        confirm_after: std::time::Duration::from_secs(5),
        lifetime: std::time::Duration::from_secs(300),
        ..MySignConfig::default()
    };
    let s = MySign::start(port, cfg.clone())
        .await
        .map_err(std::io::Error::other)?;
    println!("Viettel MySign sandbox listening on {}", s.base_url());
    println!("  POST /vtss/service/ras/v1/login  /vtss/service/certificates/info  /vtss/service/signHash  /vtss/service/requests/status");
    println!(
        "  client_id {:?}, client_secret {:?}, profile_id {:?}; tokens live {:?}",
        cfg.client_id, cfg.client_secret, cfg.profile_id, cfg.token_lifetime
    );
    println!(
        "  officials (user_id / credentialID): {}",
        cfg.officials
            .iter()
            .map(|o| format!("{} / {}", o.user_id, o.credential_id))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  sandbox: GET {0}/_sandbox/records, GET|POST {0}/_sandbox/faults, POST {0}/_sandbox/expire-tokens",
        s.base_url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
