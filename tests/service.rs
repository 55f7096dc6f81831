//! `gateway run` as a systemd `Type=notify` service: the test plays the service manager. It
//! binds the Unix datagram socket systemd would, starts the gateway binary with
//! `NOTIFY_SOCKET` pointing at it (embedded queue and SQLite store, one route to a recording
//! sink) and reads what the gateway says:
//! - `READY=1` only once `/readyz` answers 200 and the route consumes (an event posted right
//!   after it is delivered), never before;
//! - SIGHUP does not stop it: it logs that reload is not supported and says so in `STATUS=`;
//! - SIGTERM: `STOPPING=1` first, then a clean exit (status 0);
//! - a gateway that cannot start (its ops port taken) exits 1 and never says `READY=1`;
//! - `gateway health` (`/healthz`, `--ready`: `/readyz`) exits 0 while it runs, 1 after;
//! - with `WATCHDOG_USEC` (the unit's `WatchdogSec=`) it pings `WATCHDOG=1` every half
//!   interval, and never without it.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gw_contract_tests::sink::{Faults, Sink};
use tokio::net::UnixDatagram;

/// The service manager's end: a datagram socket in a fresh folder.
struct Manager {
    socket: UnixDatagram,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Manager {
    fn bind() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        Manager {
            socket,
            path,
            _dir: dir,
        }
    }

    /// The next datagram's text, or `None` after `wait`.
    async fn next(&self, wait: Duration) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(wait, self.socket.recv(&mut buf)).await {
            Ok(Ok(n)) => Some(String::from_utf8(buf[..n].to_vec()).expect("UTF-8 datagram")),
            Ok(Err(e)) => panic!("notify socket: {e}"),
            Err(_) => None,
        }
    }

    /// Datagrams until one has the line `line`; returns those before it and that one.
    async fn until(&self, line: &str, wait: Duration) -> (Vec<String>, String) {
        let deadline = Instant::now() + wait;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self.next(left).await.unwrap_or_else(|| {
                panic!("no `{line}` from the gateway within {wait:?}; got {before:?}")
            });
            if msg.lines().any(|l| l == line) {
                return (before, msg);
            }
            before.push(msg);
        }
    }
}

struct Gateway {
    child: Child,
    ops: String,
    inbound: String,
    stderr: Arc<Mutex<String>>,
}

/// Start `gateway run` with `NOTIFY_SOCKET`; stdout's first line gives the addresses, stderr
/// (the log) is collected.
fn spawn(config: &std::path::Path, notify: &std::path::Path) -> Gateway {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--config"])
        .arg(config)
        .env("GW_TEST_SOURCE_TOKEN", TOKEN)
        .env("GATEWAY_LOG", "info")
        .env("NOTIFY_SOCKET", notify)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gateway binary starts");
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().unwrap();
    let log = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            log.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = match lines.next() {
        Some(Ok(l)) => l,
        _ => {
            let _ = child.wait();
            panic!(
                "the gateway printed no address line; its log:\n{}",
                stderr.lock().unwrap()
            );
        }
    };
    // "gateway running: inbound http://A ops http://B"
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.get(4), Some(&"ops"), "unexpected first line: {line}");
    let (inbound, ops) = (words[3].to_string(), words[5].to_string());
    std::thread::spawn(move || for _ in lines {});
    Gateway {
        child,
        ops,
        inbound,
        stderr,
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {sig} failed");
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn ready_after_readyz_and_consuming_stopping_on_sigterm_sighup_ignored() {
    let sink = Sink::start(0, Faults::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    let route = unique("svc");
    std::fs::write(
        &cfg,
        config_text(
            Backend::Embedded,
            &dir.path().join("data"),
            &route,
            &sink.url(),
            "",
        ),
    )
    .unwrap();
    let manager = Manager::bind();
    let mut g = spawn(&cfg, &manager.path);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    // READY=1, with a status line, after a `starting` status and nothing ready before it.
    let (before, ready) = manager.until("READY=1", Duration::from_secs(60)).await;
    assert!(
        before.iter().any(|m| m.contains("STATUS=starting")),
        "a starting status comes first: {before:?}"
    );
    assert!(
        ready.contains("STATUS=ready: 1 route(s) consuming"),
        "READY=1 carries the status: {ready:?}"
    );
    // At the moment READY=1 arrives, /readyz already answers 200 for both backends ...
    let readyz = client
        .get(format!("{}/readyz", g.ops))
        .send()
        .await
        .expect("ops answers once READY=1 was sent");
    assert_eq!(readyz.status(), 200, "/readyz after READY=1");
    let body: serde_json::Value = readyz.json().await.unwrap();
    assert_eq!(body["broker"], true, "{body}");
    assert_eq!(body["store"], true, "{body}");
    // ... and the route consumes: an event posted now is delivered.
    let inbound: std::net::SocketAddr = g.inbound.trim_start_matches("http://").parse().unwrap();
    assert_eq!(
        post_event(&client, inbound, "SVC-1", 1).await,
        reqwest::StatusCode::ACCEPTED
    );
    eventually(
        Duration::from_secs(20),
        "the event reaches the sink",
        || sink.records().iter().any(|r| r.key == "SVC-1"),
    )
    .await;

    // `gateway health` (the container's HEALTHCHECK) says so too, for both endpoints.
    let ops_addr = g.ops.trim_start_matches("http://").to_string();
    for extra in [&[][..], &["--ready"][..]] {
        let out = gateway_health(&ops_addr, extra);
        assert!(out.status.success(), "gateway health {extra:?}: {out:?}");
    }

    // SIGHUP: still alive and serving, the log and the status say reload is not supported.
    signal(&g.child, "-HUP");
    let (_, hup) = manager
        .until_status_containing("SIGHUP ignored", Duration::from_secs(10))
        .await;
    assert!(!hup.contains("STOPPING=1"), "{hup}");
    // A second later: nothing said about stopping, the process is there, and it still
    // accepts and delivers.
    while let Some(m) = manager.next(Duration::from_secs(1)).await {
        assert!(!m.contains("STOPPING=1"), "SIGHUP began a shutdown: {m}");
        assert!(
            !m.contains("WATCHDOG=1"),
            "watchdog pings without WatchdogSec: {m}"
        );
    }
    assert!(
        g.child.try_wait().unwrap().is_none(),
        "SIGHUP must not stop the gateway"
    );
    assert_eq!(
        post_event(&client, inbound, "SVC-2", 1).await,
        reqwest::StatusCode::ACCEPTED,
        "accepting after SIGHUP"
    );
    eventually(Duration::from_secs(20), "delivered after SIGHUP", || {
        sink.records().iter().any(|r| r.key == "SVC-2")
    })
    .await;
    let health = client
        .get(format!("{}/healthz", g.ops))
        .send()
        .await
        .expect("still serving after SIGHUP");
    assert_eq!(health.status(), 200);
    eventually(Duration::from_secs(5), "the SIGHUP log line", || {
        g.stderr
            .lock()
            .unwrap()
            .contains("configuration reload is not supported")
    })
    .await;

    // SIGTERM: STOPPING=1 first, then a clean exit.
    signal(&g.child, "-TERM");
    let (_, stopping) = manager.until("STOPPING=1", Duration::from_secs(10)).await;
    assert!(stopping.contains("STATUS=stopping"), "{stopping:?}");
    let status = wait_exit(&mut g.child, Duration::from_secs(30));
    assert!(
        status.success(),
        "exit after SIGTERM: {status}; log:\n{}",
        g.stderr.lock().unwrap()
    );
    // Nobody listens any more: `gateway health` fails (exit 1) and says where it asked.
    let out = gateway_health(&ops_addr, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unhealthy") && err.contains(&ops_addr),
        "{err}"
    );
}

/// `gateway health --addr ADDR EXTRA...`.
fn gateway_health(addr: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["health", "--addr", addr])
        .args(extra)
        .output()
        .expect("gateway health runs")
}

#[tokio::test]
async fn the_watchdog_is_fed_when_the_unit_asks_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        config_text(
            Backend::Embedded,
            &dir.path().join("data"),
            &unique("svc"),
            "http://127.0.0.1:9/",
            "",
        ),
    )
    .unwrap();
    let manager = Manager::bind();
    // What systemd sets for WatchdogSec=400ms (WATCHDOG_PID left out: any process).
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("GW_TEST_SOURCE_TOKEN", TOKEN)
        .env("NOTIFY_SOCKET", &manager.path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    manager.until("READY=1", Duration::from_secs(60)).await;
    // Fed every half interval (200 ms): at least 4 pings in 1.5 s.
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut pings = 0;
    while let Some(m) = manager
        .next(deadline.saturating_duration_since(Instant::now()))
        .await
    {
        pings += m.lines().filter(|l| *l == "WATCHDOG=1").count();
    }
    assert!(
        pings >= 4,
        "{pings} watchdog pings in 1.5 s at a 400 ms interval"
    );
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
}

#[tokio::test]
async fn a_gateway_that_cannot_start_never_says_ready() {
    // The ops port is taken: start fails after the backends opened.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    let text = config_text(
        Backend::Embedded,
        &dir.path().join("data"),
        &unique("svc"),
        "http://127.0.0.1:9/",
        "",
    )
    .replacen(
        "[ops]\nlisten = \"127.0.0.1:0\"",
        &format!("[ops]\nlisten = \"127.0.0.1:{port}\""),
        1,
    );
    assert!(text.contains(&format!("127.0.0.1:{port}")), "ops port set");
    std::fs::write(&cfg, text).unwrap();
    let manager = Manager::bind();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("GW_TEST_SOURCE_TOKEN", TOKEN)
        .env("NOTIFY_SOCKET", &manager.path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert_eq!(status.code(), Some(1), "exit 1; log:\n{log}");
    assert!(log.contains("cannot listen on"), "names the cause:\n{log}");
    let mut said = Vec::new();
    while let Some(m) = manager.next(Duration::from_millis(200)).await {
        said.push(m);
    }
    assert!(
        !said.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "READY=1 from a gateway that did not start: {said:?}"
    );
    assert!(
        said.iter().any(|m| m.contains("STATUS=cannot start")),
        "the failure is in the status: {said:?}"
    );
}

impl Manager {
    /// Datagrams until a `STATUS=` line contains `text`.
    async fn until_status_containing(&self, text: &str, wait: Duration) -> (Vec<String>, String) {
        let deadline = Instant::now() + wait;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self.next(left).await.unwrap_or_else(|| {
                panic!("no status containing `{text}` within {wait:?}; got {before:?}")
            });
            if msg
                .lines()
                .any(|l| l.starts_with("STATUS=") && l.contains(text))
            {
                return (before, msg);
            }
            before.push(msg);
        }
    }
}
