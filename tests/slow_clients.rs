//! Slow and hostile clients against the inbound listener, at the shipped limits: a few hundred
//! connections trickling a request head do not keep a payment callback from being answered,
//! and are closed after `header_read_timeout` (before, all were still open after 60 s:
//! `axum::serve` gave hyper no timer); a body that never comes gets 408 after
//! `body_read_timeout`; a wrong token is refused on the head, without waiting for the body.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gateway::app;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const SLOW: usize = 300;

fn config(dir: &std::path::Path, extra_inbound: &str) -> String {
    std::env::set_var("GW_TEST_VNPAY_SECRET", "vnpay-secret-0123456789");
    let text = config_text(
        Backend::Embedded,
        dir,
        &unique("slow"),
        "http://127.0.0.1:9/",
        "",
    );
    let inbound = "[inbound]\nlisten = \"127.0.0.1:0\"\n";
    assert!(text.contains(inbound));
    text.replace(inbound, &format!("{inbound}{extra_inbound}"))
        + "\n[payments]\n[payments.vnpay.vnpay]\ntmn_code = \"T\"\nhash_secret = { env = \"GW_TEST_VNPAY_SECRET\" }\nreturn_url = \"https://r\"\n"
}

/// Whether the server closed `s` (EOF or reset) within `within`.
async fn closed(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let until = Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408/400 answer before the close is fine; keep reading to the close.
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trickling_heads_are_cut_at_the_shipped_timeout_and_callbacks_still_answered() {
    let dir = tempfile::tempdir().unwrap();
    let running = app::start(&load(&config(dir.path(), "")), CancellationToken::new())
        .await
        .expect("gateway starts");
    let addr = running.inbound_addr;
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /in/onestop HTTP/1.1\r\nHost: gw\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let started = Instant::now();
    // They trickle a header byte every second.
    let trickle = tokio::spawn(async move {
        for _ in 0..30 {
            for s in slow.iter_mut() {
                let _ = s.write_all(b"X").await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        slow
    });

    // Meanwhile a provider's callback is answered (an unsigned one: 97, invalid signature).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        reqwest::get(format!(
            "http://{addr}/payments/vnpay/ipn?vnp_TxnRef=GW1&vnp_SecureHash=00"
        )),
    )
    .await
    .expect("the callback is answered while 300 clients trickle")
    .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["RspCode"], "97", "{v}");

    let mut slow = trickle.await.unwrap();
    // By now (30 s of trickling) every one was cut at the 10 s head timeout.
    let mut still_open = 0;
    for s in slow.iter_mut() {
        if !closed(s, Duration::from_millis(200)).await {
            still_open += 1;
        }
    }
    eprintln!(
        "{SLOW} trickling connections, {still_open} still open after {:.0?}",
        started.elapsed()
    );
    assert_eq!(still_open, 0, "every trickling connection was closed");
    running.shutdown().await;
}

/// An idle kept-alive connection is closed at the head timeout too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_at_the_head_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let running = app::start(
        &load(&config(dir.path(), "header_read_timeout = \"1s\"\n")),
        CancellationToken::new(),
    )
    .await
    .expect("gateway starts");
    let mut s = TcpStream::connect(running.inbound_addr).await.unwrap();
    assert!(closed(&mut s, Duration::from_secs(5)).await, "idle closed");
    // Kept alive after a request, then idle: closed too.
    let mut s = TcpStream::connect(running.inbound_addr).await.unwrap();
    s.write_all(b"GET /payments/vnpay/ipn?vnp_TxnRef=GW1 HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed(&mut s, Duration::from_secs(5)).await,
        "idle keep-alive closed"
    );
    running.shutdown().await;
}

async fn body_never_comes(body_timeout: Option<&str>, wait: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let extra = body_timeout
        .map(|t| format!("body_read_timeout = \"{t}\"\n"))
        .unwrap_or_default();
    let running = app::start(&load(&config(dir.path(), &extra)), CancellationToken::new())
        .await
        .expect("gateway starts");
    let head = |token: &str| {
        format!(
            "POST /in/onestop HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"kind\":"
        )
    };
    // A wrong token is answered on the head alone.
    let mut s = TcpStream::connect(running.inbound_addr).await.unwrap();
    s.write_all(head("wrong").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answered without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    // The right token, and a body that stops after 8 bytes: 408.
    let mut s = TcpStream::connect(running.inbound_addr).await.unwrap();
    s.write_all(head(TOKEN).as_bytes()).await.unwrap();
    let n = tokio::time::timeout(wait, s.read(&mut buf))
        .await
        .expect("answered when the body timed out")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_not_received"), "{answer}");
    let stats = running
        .engine
        .broker
        .stats(&running.engine.routes[0].queue(0))
        .await
        .unwrap();
    assert_eq!(stats.ready + stats.unacked, 0, "nothing queued");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_comes_gets_408() {
    body_never_comes(Some("1s"), Duration::from_secs(10)).await;
}

/// The twin at the shipped 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_comes_gets_408_at_the_shipped_timeout() {
    body_never_comes(None, Duration::from_secs(45)).await;
}
