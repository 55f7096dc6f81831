//! `[inbound]`: the HTTP listener sources post events to, and its limits.

use serde::Deserialize;

use super::defaults;
use super::duration::Dur;

#[derive(Debug, Clone, Deserialize)]
pub struct InboundSection {
    /// Address the inbound listener binds. Default `127.0.0.1:8080`.
    #[serde(default = "d_inbound")]
    pub listen: String,
    /// Largest accepted body in bytes; larger gets 413. Default 1 MiB.
    #[serde(default = "d_max_body")]
    pub max_body_bytes: usize,
    /// A client must send a whole request head within this (also the idle limit of a
    /// kept-alive connection). Default 10s.
    #[serde(default = "d_header_timeout")]
    pub header_read_timeout: Dur,
    /// A request body must arrive within this after its head (else 408). Default 30s.
    #[serde(default = "d_body_timeout")]
    pub body_read_timeout: Dur,
    /// Connections served at once (the inbound and the ops listener each). Default 1024.
    #[serde(default = "d_max_connections")]
    pub max_connections: usize,
    /// Requests of one source handled at once; more get 503 with Retry-After. Default 256.
    #[serde(default = "d_source_concurrency")]
    pub source_concurrency: usize,
}

impl Default for InboundSection {
    fn default() -> Self {
        Self {
            listen: d_inbound(),
            max_body_bytes: d_max_body(),
            header_read_timeout: d_header_timeout(),
            body_read_timeout: d_body_timeout(),
            max_connections: d_max_connections(),
            source_concurrency: d_source_concurrency(),
        }
    }
}

fn d_header_timeout() -> Dur {
    Dur(defaults::INBOUND_HEADER_READ_TIMEOUT)
}
fn d_body_timeout() -> Dur {
    Dur(defaults::INBOUND_BODY_READ_TIMEOUT)
}
fn d_max_connections() -> usize {
    defaults::INBOUND_MAX_CONNECTIONS
}
fn d_source_concurrency() -> usize {
    defaults::INBOUND_SOURCE_CONCURRENCY
}

fn d_inbound() -> String {
    defaults::INBOUND_LISTEN.into()
}
fn d_max_body() -> usize {
    defaults::MAX_BODY_BYTES
}

/// Whether a listen address only ever binds loopback: an IP address is decided on directly, a
/// host name by every address it resolves to (none resolved: not loopback).
pub fn listen_is_loopback(listen: &str) -> bool {
    use std::net::ToSocketAddrs;
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => match listen.to_socket_addrs() {
            Ok(addrs) => {
                let addrs: Vec<_> = addrs.collect();
                !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
            }
            Err(_) => false,
        },
    }
}

/// `key` must be an `IP:PORT` socket address (shared with `ops.listen`).
pub(super) fn check_listen(key: &str, addr: &str, p: &mut impl FnMut(String, String, &str)) {
    if addr.parse::<std::net::SocketAddr>().is_err() {
        p(
            key.into(),
            format!("`{addr}` is not an address"),
            "write IP:PORT, like 127.0.0.1:8080",
        );
    }
}

/// Check `inbound.listen`.
pub(super) fn validate_listen(i: &InboundSection, p: &mut impl FnMut(String, String, &str)) {
    check_listen("inbound.listen", &i.listen, p);
}

/// Check the listener's limits: none may be zero.
pub(super) fn validate_limits(i: &InboundSection, p: &mut impl FnMut(String, String, &str)) {
    if i.max_body_bytes == 0 {
        p(
            "inbound.max_body_bytes".into(),
            "must be more than 0".into(),
            "set a cap such as 1048576",
        );
    }
    for (at, zero) in [
        (
            "inbound.header_read_timeout",
            i.header_read_timeout.0.is_zero(),
        ),
        ("inbound.body_read_timeout", i.body_read_timeout.0.is_zero()),
        ("inbound.max_connections", i.max_connections == 0),
        ("inbound.source_concurrency", i.source_concurrency == 0),
    ] {
        if zero {
            p(
                at.into(),
                "must be more than 0".into(),
                "leave it out for the default",
            );
        }
    }
}
