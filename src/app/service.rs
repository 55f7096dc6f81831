//! The service manager's side of `gateway run`: systemd's `sd_notify` protocol (readiness,
//! stopping, status lines, watchdog) and the signals a service receives.
//!
//! # Invariants
//! - **`READY=1` means serving.** It is sent only after both listeners are bound and every
//!   route queue has a consumer ([`super::Running::consuming`]), so `systemctl start` returns
//!   when `/readyz` already answers and events already flow. A gateway that cannot get there
//!   never says it is ready: with `Type=notify` systemd fails the start instead.
//! - **`STOPPING=1` comes first at shutdown**, before the in-flight work is finished, so that
//!   systemd (and `systemctl status`) know the exit that follows is the one asked for.
//! - **Without a service manager nothing happens.** With `NOTIFY_SOCKET` unset every call is a
//!   no-op; a socket that cannot be written is logged once per message, never fatal (the
//!   gateway's work does not depend on systemd hearing about it).
//! - **SIGHUP never kills the gateway.** A configuration reload is not supported (keys,
//!   routes, connectors and listeners are read once, at start): SIGHUP is logged with the way
//!   to apply a change (a restart), the running configuration stays in force. Only SIGTERM and
//!   SIGINT stop it.
//! - The watchdog (`WatchdogSec=` in the unit) is fed from the async runtime at half the
//!   interval, so a runtime that stops scheduling gets the process restarted.
//!
//! The protocol is spoken by the `sd-notify` crate: one datagram to the Unix socket named by
//! `NOTIFY_SOCKET` (a path or an abstract `@name`), no libsystemd.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Tell the service manager `states`; a no-op without `NOTIFY_SOCKET`.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// `STATUS=…`: a one-line state `systemctl status gateway` shows.
pub fn status(text: &str) {
    notify(&[NotifyState::Status(text)]);
}

/// `READY=1` with a status line: listeners bound, every route consuming.
pub fn ready(text: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(text)]);
}

/// `STOPPING=1` with a status line: shutdown has begun.
pub fn stopping(text: &str) {
    notify(&[NotifyState::Stopping, NotifyState::Status(text)]);
}

/// With `WatchdogSec=` set on the unit (systemd passes `WATCHDOG_USEC`), `WATCHDOG=1` every
/// half interval until `cancel`. Returns the interval, or `None` when no watchdog is asked for.
pub fn spawn_watchdog(cancel: CancellationToken) -> Option<Duration> {
    let interval = sd_notify::watchdog_enabled()?;
    let every = (interval / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        loop {
            notify(&[NotifyState::Watchdog]);
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
    Some(interval)
}

/// What SIGHUP answers: the gateway keeps running on the configuration it started with.
pub const RELOAD_UNSUPPORTED: &str = "SIGHUP received: configuration reload is not supported, \
     the running configuration stays in force; restart the gateway to apply a changed \
     configuration, key or secret (systemctl restart gateway)";

/// Wait for SIGTERM or SIGINT (the stop signals). SIGHUP is answered with a log line and a
/// status line ([`RELOAD_UNSUPPORTED`]) and the wait goes on: a service must not die of it.
pub async fn wait_for_stop() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { info!("SIGINT received: stopping"); return; }
            _ = term.recv() => { info!("SIGTERM received: stopping"); return; }
            _ = hup.recv() => {
                warn!("{RELOAD_UNSUPPORTED}");
                status("running; SIGHUP ignored: reload is not supported, restart to apply changes");
            }
        }
    }
}
