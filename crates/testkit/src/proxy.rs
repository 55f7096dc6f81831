//! A fault-injecting TCP proxy on loopback, for the fault-injection suite (`tests/faults.rs`).
//!
//! No external fault tool (toxiproxy, tc, iptables) is installable here, so this small one sits
//! between the gateway and a party (RabbitMQ, the portal sandbox) and is driven from the test:
//!
//! - [`Proxy::cut`]: close every open connection (FIN on both sides);
//! - [`Proxy::reset`]: abort every open connection with a TCP RST (zero linger);
//! - [`Proxy::set_down`]: while down, new connections are accepted and closed at once (the
//!   party looks unreachable), open ones are untouched (combine with `cut` for an outage);
//! - [`Proxy::stall`]: stop forwarding in both directions; connections stay open and bytes
//!   wait (a hung peer), until `stall(false)`;
//! - [`Proxy::slow`]: forward at most 1 KiB at a time, each chunk after `delay` (a slow,
//!   throttled link); `Duration::ZERO` ends it.
//!
//! Each accepted connection opens its own upstream connection; bytes are forwarded unchanged.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Control {
    /// Connections born before the latest cut (epoch lower than this) close.
    cut_epoch: u64,
    /// Connections born before the latest reset abort with RST.
    reset_epoch: u64,
    down: bool,
    stalled: bool,
    slow_ms: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    open: AtomicU64,
    bytes: AtomicU64,
}

/// A running proxy. Dropping it does not stop it (it lives as long as the runtime); call
/// [`Proxy::set_down`] and [`Proxy::cut`] to silence it.
#[derive(Clone)]
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    upstream: SocketAddr,
    ctl: Arc<watch::Sender<Control>>,
    counters: Arc<Counters>,
}

/// Figures of a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted and forwarded.
    pub accepted: u64,
    /// Connections closed at once while down.
    pub refused: u64,
    /// Connections open now.
    pub open: u64,
    /// Bytes forwarded, both directions.
    pub bytes: u64,
}

impl Proxy {
    /// Listen on `127.0.0.1:0` and forward to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (tx, _) = watch::channel(Control::default());
        let p = Proxy {
            addr,
            upstream,
            ctl: Arc::new(tx),
            counters: Arc::default(),
        };
        let q = p.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let c = *q.ctl.borrow();
                if c.down {
                    q.counters.refused.fetch_add(1, Ordering::Relaxed);
                    let _ = client.set_zero_linger();
                    drop(client);
                    continue;
                }
                q.counters.accepted.fetch_add(1, Ordering::Relaxed);
                let q2 = q.clone();
                tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(q2.upstream).await else {
                        let _ = client.set_zero_linger();
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    q2.counters.open.fetch_add(1, Ordering::Relaxed);
                    pump(
                        client,
                        upstream,
                        q2.ctl.subscribe(),
                        (c.cut_epoch, c.reset_epoch),
                        &q2.counters,
                    )
                    .await;
                    q2.counters.open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        Ok(p)
    }

    /// The upstream address.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Close every open connection.
    pub fn cut(&self) {
        self.ctl.send_modify(|c| c.cut_epoch += 1);
    }

    /// Abort every open connection with a TCP RST.
    pub fn reset(&self) {
        self.ctl.send_modify(|c| c.reset_epoch += 1);
    }

    /// Refuse (accept and close) new connections while `down`.
    pub fn set_down(&self, down: bool) {
        self.ctl.send_modify(|c| c.down = down);
    }

    /// Stop (or resume) forwarding on every connection, open or new.
    pub fn stall(&self, on: bool) {
        self.ctl.send_modify(|c| c.stalled = on);
    }

    /// Forward 1 KiB chunks, each after `delay`; zero ends it.
    pub fn slow(&self, delay: Duration) {
        let ms = delay.as_millis() as u64;
        self.ctl.send_modify(|c| c.slow_ms = ms);
    }

    /// Back to plain forwarding (not down, not stalled, not slow).
    pub fn heal(&self) {
        self.ctl.send_modify(|c| {
            c.down = false;
            c.stalled = false;
            c.slow_ms = 0;
        });
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        ProxyStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            open: c.open.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
        }
    }
}

/// Forward both ways until either side closes or a cut/reset reaches this connection.
async fn pump(
    mut client: TcpStream,
    mut upstream: TcpStream,
    mut ctl: watch::Receiver<Control>,
    born: (u64, u64),
    counters: &Counters,
) {
    let mut b1 = vec![0u8; 16 * 1024];
    let mut b2 = vec![0u8; 16 * 1024];
    loop {
        let c = *ctl.borrow_and_update();
        if c.reset_epoch != born.1 {
            let _ = client.set_zero_linger();
            let _ = upstream.set_zero_linger();
            return;
        }
        if c.cut_epoch != born.0 {
            let _ = client.shutdown().await;
            let _ = upstream.shutdown().await;
            return;
        }
        if c.stalled {
            if ctl.changed().await.is_err() {
                return;
            }
            continue;
        }
        let chunk = if c.slow_ms > 0 { 1024 } else { b1.len() };
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = upstream.split();
        // Reads are cancel-safe: a read that loses the race has consumed nothing.
        let (n, to_upstream) = tokio::select! {
            r = cr.read(&mut b1[..chunk]) => (r, true),
            r = ur.read(&mut b2[..chunk]) => (r, false),
            ch = ctl.changed() => {
                if ch.is_err() {
                    return;
                }
                continue;
            }
        };
        let n = match n {
            Ok(0) | Err(_) => {
                // One side closed: close the other (HTTP and AMQP need no half-close).
                let _ = cw.shutdown().await;
                let _ = uw.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if c.slow_ms > 0 {
            tokio::time::sleep(Duration::from_millis(c.slow_ms)).await;
        }
        let w = if to_upstream {
            uw.write_all(&b1[..n]).await
        } else {
            cw.write_all(&b2[..n]).await
        };
        if w.is_err() {
            return;
        }
        counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo() -> SocketAddr {
        let l = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        s.write_all(b"ping").await?;
        let mut b = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut b))
            .await
            .map_err(|_| std::io::Error::other("timed out"))??;
        Ok(b.to_vec())
    }

    #[tokio::test]
    async fn forwards_cuts_resets_stalls_and_refuses() {
        let p = Proxy::start(echo().await).await.unwrap();
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        assert_eq!(roundtrip(&mut s).await.unwrap(), b"ping");

        // Stalled: nothing comes back until healed, then the held bytes arrive.
        p.stall(true);
        s.write_all(b"held").await.unwrap();
        let mut b = [0u8; 4];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut b))
                .await
                .is_err(),
            "a stalled proxy forwards nothing"
        );
        p.heal();
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&b, b"held");

        // Slow still delivers.
        p.slow(Duration::from_millis(20));
        assert_eq!(roundtrip(&mut s).await.unwrap(), b"ping");
        p.heal();

        // Cut: the open connection ends.
        p.cut();
        let mut b = [0u8; 4];
        let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b))
            .await
            .unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "a cut connection is closed");

        // Reset: a new connection is aborted.
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        assert_eq!(roundtrip(&mut s).await.unwrap(), b"ping");
        p.reset();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(roundtrip(&mut s).await.is_err(), "a reset connection fails");

        // Down: new connections are closed at once.
        p.set_down(true);
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        assert!(roundtrip(&mut s).await.is_err());
        p.heal();
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        assert_eq!(roundtrip(&mut s).await.unwrap(), b"ping");
        let st = p.stats();
        assert!(st.refused >= 1 && st.accepted >= 3, "{st:?}");
    }
}
