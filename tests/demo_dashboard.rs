//! The README's first command shows the dashboard: `gateway demo --keep-running` at its
//! default size prints the dashboard's URL with a fresh token of this run; the URL answers
//! 200 with the dashboard, the API answers with that token (and refuses without it or with
//! another one), the summary says every dossier arrived, the dashboard stays up after the
//! summary until Ctrl-C (SIGINT), and the token is printed once (the banner), nowhere else.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Wait for a stdout line containing `what` (bounded); every line seen goes to `seen`.
fn wait_line(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    what: &str,
    timeout: Duration,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(what) {
                    return line;
                }
            }
            Err(_) => panic!(
                "no line with `{what}` within {timeout:?}; the demo printed:\n{}",
                seen.join("\n")
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_a_working_dashboard_url_and_keeps_it_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["demo", "--keep-running"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gateway binary starts");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut seen = Vec::new();

    // The banner's dashboard line: http://HOST:PORT/#token=TOKEN
    let line = wait_line(&rx, &mut seen, "  dashboard ", Duration::from_secs(60));
    let url = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no URL on `{line}`"))
        .to_string();
    let (base, token) = url
        .split_once("/#token=")
        .unwrap_or_else(|| panic!("no token in the dashboard URL `{url}`"));
    assert!(base.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(token.len(), 64, "a 256-bit hex token: {token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");

    let http = reqwest::Client::new();
    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Gateway operations") && html.contains("/assets/dashboard.js"),
        "{html}"
    );
    let js = http
        .get(format!("{base}/assets/dashboard.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(
        js.text().await.unwrap().contains("#token="),
        "the page reads the fragment"
    );
    let status = |t: Option<String>| {
        let mut r = http.get(format!("{base}/api/v1/status"));
        if let Some(t) = t {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let ok = status(Some(token.to_string())).await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(body["caller"]["name"], "demo", "{body}");
    assert_eq!(body["caller"]["role"], "operator", "{body}");
    assert_eq!(status(None).await.unwrap().status(), 401);
    assert_eq!(
        status(Some("0".repeat(64))).await.unwrap().status(),
        401,
        "another token is refused"
    );
    let routes = http
        .get(format!("{base}/api/v1/routes"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(routes.status(), 200);
    assert!(routes.text().await.unwrap().contains("dossier-sync"));

    // The demo finishes (default size), then keeps the dashboard up.
    wait_line(
        &rx,
        &mut seen,
        "OK: every dossier reached the portal in its newest version",
        Duration::from_secs(900),
    );
    wait_line(
        &rx,
        &mut seen,
        "running until Ctrl-C",
        Duration::from_secs(30),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = status(Some(token.to_string())).await.unwrap();
    assert_eq!(after.status(), 200, "the dashboard outlives the summary");
    let body: serde_json::Value = after.json().await.unwrap();
    assert!(
        body["outcomes"]["delivered"].as_u64().unwrap_or(0) > 0,
        "the API shows the demo's deliveries: {body}"
    );
    assert_eq!(
        http.get(format!("{base}/")).send().await.unwrap().status(),
        200
    );

    // Ctrl-C ends it, cleanly.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(code.success(), "exit after Ctrl-C: {code}");
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(2)) {
        seen.push(l);
    }
    let stderr = err_reader.join().unwrap();
    let printed = seen.iter().filter(|l| l.contains(token)).count();
    assert_eq!(printed, 1, "the token is printed once, in the banner");
    assert!(!stderr.contains(token), "the token is not in the logs");
}
