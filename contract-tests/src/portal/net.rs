//! A TCP listener whose connections a handler can reset: the handler flips the connection's
//! kill switch, and the next read or write on the socket sets `SO_LINGER` to zero and fails, so
//! hyper drops the connection and the kernel sends a RST. The client sees a connection reset or
//! an incomplete message, never an HTTP answer.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

pub(crate) struct KillableListener(pub TcpListener);

/// One accepted connection's handle, given to handlers as `ConnectInfo`.
#[derive(Clone, Debug)]
pub(crate) struct Conn {
    /// The client's address (kept for debugging).
    #[allow(dead_code)]
    pub peer: SocketAddr,
    kill: Arc<AtomicBool>,
}

impl Conn {
    /// Reset this connection instead of answering.
    pub fn kill(&self) {
        self.kill.store(true, Ordering::SeqCst);
    }
}

pub(crate) struct KillableStream {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

impl KillableStream {
    fn check(&self) -> io::Result<()> {
        if self.kill.load(Ordering::SeqCst) {
            let _ = self.inner.set_zero_linger();
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "sandbox: connection reset on purpose",
            ));
        }
        Ok(())
    }
}

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((s, peer)) => {
                    let _ = s.set_nodelay(true);
                    let kill = Arc::new(AtomicBool::new(false));
                    return (
                        KillableStream {
                            inner: s,
                            kill: kill.clone(),
                        },
                        Conn { peer, kill },
                    );
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Conn {
            peer: self.0.local_addr()?,
            kill: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
