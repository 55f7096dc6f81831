//! The running SmartCA sandbox: router, listener, control methods.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::routing::post;
use axum::Router;

use super::api::{certificate_ep, sign_ep, status_ep};
use super::config::SmartCaConfig;
use crate::officials::{Core, OfficialError, SignFaults, SignRecords};

pub(super) use super::state::Shared;

/// A running SmartCA sandbox.
#[derive(Clone)]
pub struct SmartCa {
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

impl SmartCa {
    /// Start on `127.0.0.1:<port>` (0 = any free port).
    pub async fn start(port: u16, cfg: SmartCaConfig) -> Result<SmartCa, StartError> {
        let core = Core::new(&cfg.officials, cfg.confirm_after, cfg.lifetime, cfg.seed)?;
        let shared = Arc::new(Shared {
            cfg,
            core: Arc::new(Mutex::new(core)),
        });
        let app = Router::new()
            .route("/v1/credentials/get_certificate", post(certificate_ep))
            .route("/v1/signatures/sign", post(sign_ep))
            .route("/v1/signatures/sign/{tran}/status", post(status_ep))
            .with_state(shared.clone())
            .merge(crate::officials::http::control_routes(shared.core.clone()));
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Ok(SmartCa { shared, addr })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn config(&self) -> &SmartCaConfig {
        &self.shared.cfg
    }

    pub fn records(&self) -> SignRecords {
        self.shared.core.lock().unwrap().records.clone()
    }

    pub fn set_faults(&self, f: SignFaults) {
        self.shared.core.lock().unwrap().faults = f;
    }

    pub fn faults(&self) -> SignFaults {
        self.shared.core.lock().unwrap().faults.clone()
    }
}

/// Run the sandbox with its defaults until Ctrl-C (`gateway sandbox smartca`).
pub async fn run_standalone(port: u16) -> std::io::Result<()> {
    let cfg = SmartCaConfig {
        confirm_after: std::time::Duration::from_secs(5),
        lifetime: std::time::Duration::from_secs(300),
        ..SmartCaConfig::default()
    };
    let s = SmartCa::start(port, cfg.clone())
        .await
        .map_err(std::io::Error::other)?;
    println!("VNPT SmartCA sandbox listening on {}", s.base_url());
    println!("  POST /v1/credentials/get_certificate  POST /v1/signatures/sign  POST /v1/signatures/sign/{{transaction_id}}/status");
    println!(
        "  sp_id {:?}, sp_password {:?} in every body",
        cfg.sp_id, cfg.sp_password
    );
    println!(
        "  officials (user_id): {}; they confirm after {:?}, requests expire after {:?}",
        cfg.officials
            .iter()
            .map(|o| o.user_id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        cfg.confirm_after,
        cfg.lifetime
    );
    println!(
        "  sandbox: GET {0}/_sandbox/records, GET|POST {0}/_sandbox/faults",
        s.base_url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
