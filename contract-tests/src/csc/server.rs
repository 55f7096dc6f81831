//! The running CSC sandbox: router, listener, control methods.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;

use super::api::{authorize_ep, info_ep, list_ep, polling_ep, sign_hash_ep};
use super::auth::token_ep;
use super::config::CscConfig;
use crate::officials::{Core, OfficialError, SignFaults, SignRecords};

pub(super) use super::state::{Shared, St};

/// A running CSC sandbox.
#[derive(Clone)]
pub struct Csc {
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

impl Csc {
    pub async fn start(port: u16, cfg: CscConfig) -> Result<Csc, StartError> {
        let core = Core::new(&cfg.officials, cfg.confirm_after, cfg.lifetime, cfg.seed)?;
        let base = cfg.base_path.trim_end_matches('/').to_string();
        let shared = Arc::new(Shared {
            cfg,
            core: Arc::new(Mutex::new(core)),
            tokens: Mutex::new(HashMap::new()),
            sads: Mutex::new(HashMap::new()),
            by_client_data: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route(&format!("{base}/oauth2/token"), post(token_ep))
            .route(&format!("{base}/credentials/list"), post(list_ep))
            .route(&format!("{base}/credentials/info"), post(info_ep))
            .route(&format!("{base}/credentials/authorize"), post(authorize_ep))
            .route(&format!("{base}/signatures/signHash"), post(sign_hash_ep))
            .route(&format!("{base}/signatures/signPolling"), post(polling_ep))
            .route("/_sandbox/expire-tokens", post(expire_ep))
            .with_state(shared.clone())
            .merge(crate::officials::http::control_routes(shared.core.clone()));
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Ok(Csc { shared, addr })
    }

    /// The API's base URL (`http://127.0.0.1:N/csc/v2`).
    pub fn base_url(&self) -> String {
        format!(
            "http://{}{}",
            self.addr,
            self.shared.cfg.base_path.trim_end_matches('/')
        )
    }

    pub fn config(&self) -> &CscConfig {
        &self.shared.cfg
    }

    pub fn records(&self) -> SignRecords {
        self.shared.core.lock().unwrap().records.clone()
    }

    pub fn set_faults(&self, f: SignFaults) {
        self.shared.core.lock().unwrap().faults = f;
    }

    pub fn expire_tokens(&self) {
        self.shared.tokens.lock().unwrap().clear();
    }
}

async fn expire_ep(State(sh): St) -> StatusCode {
    sh.tokens.lock().unwrap().clear();
    StatusCode::NO_CONTENT
}

/// Run the sandbox until Ctrl-C (`gateway sandbox csc`).
pub async fn run_standalone(port: u16) -> std::io::Result<()> {
    let cfg = CscConfig {
        confirm_after: std::time::Duration::from_secs(5),
        lifetime: std::time::Duration::from_secs(300),
        ..CscConfig::default()
    };
    let s = Csc::start(port, cfg.clone())
        .await
        .map_err(std::io::Error::other)?;
    println!("CSC API v2 sandbox listening on {}", s.base_url());
    println!("  POST oauth2/token, credentials/list|info|authorize, signatures/signHash (operationMode S|A), signatures/signPolling");
    println!(
        "  client_id {:?}, client_secret {:?}",
        cfg.client_id, cfg.client_secret
    );
    println!(
        "  officials (userID / credentialID): {}",
        cfg.officials
            .iter()
            .map(|o| format!("{} / {}", o.user_id, o.credential_id))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  sandbox: GET http://{0}/_sandbox/records, GET|POST http://{0}/_sandbox/faults",
        s.addr
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
