//! `gateway health`: ask a running gateway's ops listener for `/healthz` (or `/readyz` with
//! `--ready`) and exit 0 when it answers 200. For a container's HEALTHCHECK or a load
//! balancer's script on a host without curl (the runtime image has none).
//!
//! # Invariants
//! - The address is the configuration's `[ops] listen` (a wildcard host, `0.0.0.0` or `[::]`,
//!   is asked on loopback), or `--addr`; nothing else is opened (no broker, no store).
//! - Exit codes: 0 it answered 200; 1 it did not (refused, timed out, another status: each
//!   printed); 2 the configuration or address is wrong.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{url}: no answer: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{url}: answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// The address to ask: `--addr`, else the configuration's ops listener.
pub fn ops_address(addr: Option<&str>, config: Option<&Path>) -> Result<String, ExitCode> {
    let listen = match (addr, config) {
        (Some(a), _) => a.to_string(),
        (None, Some(path)) => match crate::config::load(path) {
            Ok(l) => l.config.ops.listen.clone(),
            Err(e) => {
                eprintln!("{e}");
                return Err(ExitCode::from(2));
            }
        },
        (None, None) => {
            eprintln!("gateway health: give --config FILE (or GATEWAY_CONFIG) or --addr HOST:PORT");
            return Err(ExitCode::from(2));
        }
    };
    Ok(loopback_for_wildcard(&listen))
}

/// `0.0.0.0:9090` → `127.0.0.1:9090`, `[::]:9090` → `[::1]:9090`; others unchanged.
fn loopback_for_wildcard(listen: &str) -> String {
    if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen.to_string()
    }
}

/// GET `http://ADDR/healthz` (or `/readyz`) within `timeout`.
pub async fn check(addr: &str, ready: bool, timeout: Duration) -> Result<String, HealthError> {
    let url = format!("http://{addr}/{}", if ready { "readyz" } else { "healthz" });
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| HealthError::Unreachable {
            url: url.clone(),
            detail: e.to_string(),
        })?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| HealthError::Unreachable {
            url: url.clone(),
            detail: e.to_string(),
        })?;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default().trim().to_string();
    if status == 200 {
        Ok(format!("{url}: ok {body}"))
    } else {
        Err(HealthError::Status { url, status, body })
    }
}

/// `gateway health [--ready] [--config FILE | --addr HOST:PORT]`.
pub async fn health(addr: Option<&str>, config: Option<&Path>, ready: bool) -> ExitCode {
    let addr = match ops_address(addr, config) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match check(&addr, ready, Duration::from_secs(5)).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_asked_on_loopback() {
        assert_eq!(loopback_for_wildcard("0.0.0.0:9090"), "127.0.0.1:9090");
        assert_eq!(loopback_for_wildcard("[::]:9090"), "[::1]:9090");
        assert_eq!(loopback_for_wildcard("10.0.0.5:9090"), "10.0.0.5:9090");
    }
}
