//! The dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver as a
//! child process on a free loopback port; the `fantoccini` WebDriver client) against
//! a gateway started in-process with traffic flowing and a dead letter waiting. It enters the
//! token, finds a dossier's trail, replays the dead letter and sees it delivered, switches to
//! Vietnamese, and saves a screenshot to `target/browser-artifacts/dashboard.png`. It also
//! takes the README's picture (English, traffic flowing, a dead letter waiting, a dossier's
//! trail open) into `target/browser-artifacts/readme-dashboard.png`, and over the tracked
//! `docs/img/dashboard.png` when `GATEWAY_README_PICTURE=1`, and logs in the way the demo's printed URL does
//! (`/#token=…`: the page keeps the token and clears it from the address bar).
//!
//! Needs `chromium` and `chromedriver` (Debian: `chromium chromium-driver`). Without them the
//! test fails under `CI=true` and is skipped with a printed reason elsewhere.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use gateway::app;
use gw_contract_tests::sink::{Faults, Sink};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const OPERATOR_TOKEN: &str = "browser-operator-token-3c1f0e9d";

fn find_in_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The browser and its driver, or `None` (skip) outside CI.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = find_in_path(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = find_in_path(&["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        (c, d) => {
            let msg = format!(
                "dashboard_in_a_real_browser: needs chromium ({}) and chromedriver ({}): apt-get install chromium chromium-driver",
                c.is_some(),
                d.is_some()
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{msg}: they must be installed in CI");
            }
            eprintln!("SKIPPED {msg}");
            None
        }
    }
}

/// chromedriver as a child; killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The WebDriver session (a `fantoccini` client) and the few steps this test takes with it.
struct WebDriver {
    client: fantoccini::Client,
    base: String,
    session: String,
}

impl WebDriver {
    async fn start(chromium: &std::path::Path, base: String, profile: &std::path::Path) -> Self {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1366,1100",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = fantoccini::ClientBuilder::native()
            .capabilities(caps)
            .connect(&base)
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}"));
        let session = client
            .session_id()
            .await
            .expect("the session's id")
            .expect("a session");
        WebDriver {
            client,
            base,
            session,
        }
    }

    async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        e.send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    async fn js(&self, script: &str, args: Value) -> Value {
        let args = match args {
            Value::Array(a) => a,
            other => vec![other],
        };
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    /// The text of the first element matching `css` ("" when there is none).
    async fn text(&self, css: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    async fn exists(&self, css: &str) -> bool {
        self.js(
            "return document.querySelector(arguments[0]) !== null;",
            json!([css]),
        )
        .await
        .as_bool()
        .unwrap_or(false)
    }

    async fn wait_until(&self, what: &str, timeout: Duration, css: &str, contains: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.text(css).await.contains(contains) {
                return;
            }
            if Instant::now() > deadline {
                let body = self.text("body").await;
                panic!(
                    "timed out waiting for {what}: `{contains}` in `{css}`; the page says:\n{body}"
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    async fn screenshot(&self) -> Vec<u8> {
        self.client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"))
    }

    async fn quit(&self) {
        let _ = self.client.clone().close().await;
    }
}

/// Close the browser even when the test fails half-way (killing chromedriver alone would leave
/// Chromium running, and a panicking runtime may not run the client's own close): a plain
/// blocking `DELETE /session/ID`.
impl Drop for WebDriver {
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let Some(addr) = self.base.strip_prefix("http://") else {
            return;
        };
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_in_a_real_browser() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    // A gateway with traffic flowing and one dossier the destination keeps failing on.
    let sink = Sink::start(
        0,
        Faults {
            failing_keys: ["H22.99-POISON".to_string()].into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("GW_BROWSER_OPERATOR", OPERATOR_TOKEN);
    let route = "dossier-sync";
    let text = config_text(Backend::Embedded, dir.path(), route, &sink.url(), "max_attempts = 2")
        .replace(
            "[ops]\nlisten = \"127.0.0.1:0\"\n",
            "[ops]\nlisten = \"127.0.0.1:0\"\ntokens = [{ name = \"alice\", role = \"operator\", token = { env = \"GW_BROWSER_OPERATOR\" } }]\n",
        );
    let running = app::start(&load(&text), CancellationToken::new())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    assert_eq!(
        post_event(&client, running.inbound_addr, "H22.99-POISON", 1).await,
        202
    );
    for d in 0..10 {
        assert_eq!(
            post_event(&client, running.inbound_addr, &format!("H22.01-{d:04}"), 1).await,
            202
        );
    }
    let m = running.engine.metrics.clone();
    eventually(Duration::from_secs(60), "first traffic settled", || {
        m.outcome_total("delivered") >= 10 && m.outcome_total("dead_lettered") >= 1
    })
    .await;
    // Keep a trickle flowing while the page watches.
    let stop = CancellationToken::new();
    let trickle = {
        let (stop, client, inbound) = (stop.clone(), client.clone(), running.inbound_addr);
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                let _ = post_event(&client, inbound, &format!("H22.02-{n:04}"), 1).await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };

    let port = free_port();
    let _driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let profile = tempfile::tempdir().unwrap();
    let wd = WebDriver::start(
        &chromium,
        format!("http://127.0.0.1:{port}"),
        profile.path(),
    )
    .await;
    let page = format!("http://{}/", running.ops_addr);
    wd.goto(&page).await;
    wd.wait_until(
        "the page",
        Duration::from_secs(10),
        "h1",
        "Gateway operations",
    )
    .await;
    assert!(wd.text("#notice").await.contains("Enter an ops token"));

    // The token, then flows and the dead letter appear.
    wd.type_into("#token", OPERATOR_TOKEN).await;
    wd.click("#save-token").await;
    wd.wait_until(
        "the route's flow",
        Duration::from_secs(15),
        "#flows tbody",
        route,
    )
    .await;
    wd.wait_until(
        "the status line",
        Duration::from_secs(15),
        "#status",
        "alice",
    )
    .await;
    wd.wait_until(
        "the dead letter",
        Duration::from_secs(15),
        "#dead-letters tbody",
        "H22.99-POISON",
    )
    .await;
    assert!(wd
        .text("#dead-letters tbody")
        .await
        .contains("retries_exhausted"));
    // A second poll gives rates.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(
        wd.exists("#flows svg.spark polyline").await,
        "history is drawn"
    );

    // A dossier's trail.
    wd.type_into("#search-input", "H22.01-0003").await;
    wd.click("#search-btn").await;
    wd.wait_until("the trail", Duration::from_secs(10), "#trail", "delivered")
        .await;
    assert!(
        wd.exists("#trail li[data-event='attempt'][data-result='delivered']")
            .await
    );
    assert!(
        wd.text("#trail").await.contains("sha256:"),
        "the digest is shown"
    );
    // The README's picture of what the demo's dashboard shows: written to
    // target/browser-artifacts/readme-dashboard.png on every run, and over the tracked
    // docs/img/dashboard.png only when GATEWAY_README_PICTURE=1 (so a test run never leaves the
    // tree changed).
    let png = wd.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let img = if std::env::var_os("GATEWAY_README_PICTURE").is_some_and(|v| v == "1") {
        root.join("docs/img")
    } else {
        root.join("target/browser-artifacts")
    };
    std::fs::create_dir_all(&img).unwrap();
    let name = if img.ends_with("docs/img") {
        "dashboard.png"
    } else {
        "readme-dashboard.png"
    };
    std::fs::write(img.join(name), &png).unwrap();

    // Fix the destination, replay from the page, see it delivered in the trail.
    sink.set_faults(Faults::default());
    wd.click("button.replay[data-key='H22.99-POISON']").await;
    wd.wait_until(
        "the replay notice",
        Duration::from_secs(10),
        "#notice",
        "Replayed",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        wd.type_into("#search-input", "H22.99-POISON").await;
        wd.click("#search-btn").await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        if wd
            .exists(&format!(
                "#trail-routes .badge[data-route='{route}'][data-outcome='delivered']"
            ))
            .await
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replayed dossier shows delivered: {}",
            wd.text("#trail").await
        );
    }
    assert!(
        wd.text("#trail").await.contains("dead-lettered"),
        "the earlier failure stays in the trail"
    );
    wd.wait_until(
        "the dead letter list empties",
        Duration::from_secs(10),
        "#dead-letters tbody",
        "No open dead letters",
    )
    .await;

    // Vietnamese.
    wd.click("#lang").await;
    wd.wait_until(
        "Vietnamese title",
        Duration::from_secs(5),
        "h1",
        "Vận hành cổng tích hợp",
    )
    .await;
    assert!(wd.text("#flows thead").await.contains("Tuyến"));
    assert!(wd.text("#trail").await.contains("đã chuyển"));
    assert_eq!(wd.text("#lang").await, "English");
    assert_eq!(
        wd.js("return document.documentElement.lang;", json!([]))
            .await,
        "vi"
    );
    tokio::time::sleep(Duration::from_millis(3200)).await;

    let png = wd.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("dashboard.png"), &png).unwrap();

    // Back to English (the choice is remembered per browser).
    wd.click("#lang").await;
    wd.wait_until(
        "English title",
        Duration::from_secs(5),
        "h1",
        "Gateway operations",
    )
    .await;

    // The demo's link: a fresh tab state, the token in the fragment.
    // (Leave the page first: a change of fragment alone does not load it again.)
    wd.js("sessionStorage.clear(); return true;", json!([]))
        .await;
    wd.goto("about:blank").await;
    wd.goto(&format!(
        "http://{}/#token={OPERATOR_TOKEN}",
        running.ops_addr
    ))
    .await;
    wd.wait_until(
        "the status line after a fragment login",
        Duration::from_secs(15),
        "#status",
        "alice",
    )
    .await;
    assert_eq!(
        wd.js("return location.hash;", json!([])).await,
        "",
        "the token is cleared from the address bar"
    );
    wd.quit().await;
    stop.cancel();
    let _ = trickle.await;
    running.shutdown().await;
}

/// A processed dossier's snapshot for the index (the page's data).
fn processed(code: &str, unit: &str, done_day: u8) -> gateway::model::envelope::Envelope {
    let payload = json!({
        "code": code, "version": 1, "procedure_code": "1.001193",
        "owner": {"name": "A", "kind": "citizen"}, "summary": "s",
        "received_at": "2026-10-05T08:00:00+07:00", "due_at": "2026-10-08T17:00:00+07:00",
        "finished_at": format!("2026-10-{done_day:02}T08:00:00+07:00"), "status": "processed",
        "handling_unit": unit, "fees": [], "attachments": [], "progress": [], "results": [],
    });
    let mut e =
        gateway::model::envelope::Envelope::new("dossier.upserted", code, "onestop", payload);
    e.version = Some(1);
    e
}

/// The service-quality index's page in a real browser: the table per commune and a chart of
/// each indicator drawn from real events, in English and then Vietnamese (with diacritics),
/// a unit's own line after clicking its row. Screenshot: target/browser-artifacts/indicators.png.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn indicators_page_in_a_real_browser() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("GW_BROWSER_IX_VIEWER", OPERATOR_TOKEN);
    let text = config_text(Backend::Embedded, dir.path(), "ix-page", "http://127.0.0.1:9/", "")
        .replace(
            "[ops]\nlisten = \"127.0.0.1:0\"\n",
            "[ops]\nlisten = \"127.0.0.1:0\"\ntokens = [{ name = \"victor\", role = \"viewer\", token = { env = \"GW_BROWSER_IX_VIEWER\" } }]\n",
        )
        + "\n[indicators]\n";
    let running = app::start(&load(&text), CancellationToken::new())
        .await
        .unwrap();
    // Xã An Phú: 2 on time; Phường Đông Hòa: 1 late (due 8 Oct, processed 12 Oct).
    for e in [
        processed("IXB-1", "Xã An Phú", 7),
        processed("IXB-2", "Xã An Phú", 6),
        processed("IXB-3", "Phường Đông Hòa", 12),
    ] {
        running.engine.publish(&e).await.unwrap();
    }
    let client = reqwest::Client::new();
    let url = format!(
        "http://{}/api/v1/indicators?period=2026-10&level=province",
        running.ops_addr
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = client
            .get(&url)
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["rows"][0]["on_time"]["den"] == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the index did not take the events: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let port = free_port();
    let _driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let profile = tempfile::tempdir().unwrap();
    let wd = WebDriver::start(
        &chromium,
        format!("http://127.0.0.1:{port}"),
        profile.path(),
    )
    .await;
    wd.goto(&format!(
        "http://{}/indicators?period=2026-10&lang=en#token={OPERATOR_TOKEN}",
        running.ops_addr
    ))
    .await;
    wd.wait_until(
        "the table",
        Duration::from_secs(15),
        "#units tbody",
        "Xã An Phú",
    )
    .await;
    let table = wd.text("#units tbody").await;
    assert!(table.contains("Phường Đông Hòa"), "{table}");
    assert!(
        table.contains("Province") && table.contains("66.67"),
        "{table}"
    );
    assert!(table.contains("100.00") && table.contains("N/A"), "{table}");
    assert!(wd.text("h1").await.contains("Service-quality index"));
    assert!(wd.text("#units thead").await.contains("On time (2.1)"));
    let charts = wd
        .js(
            "return document.querySelectorAll('#charts svg.line-chart').length;",
            json!([]),
        )
        .await;
    assert_eq!(charts, 6, "a chart per indicator");
    assert!(
        wd.exists("svg[data-indicator='on_time'] path.province")
            .await
    );
    assert!(!wd.exists("path.unit").await, "no unit line before a click");
    // The lowest list with the default minimum (10): nobody ranked yet, both named as too few.
    assert!(wd.text("#lowest-hint").await.contains("at least 10"));

    // A unit's own line beside the province.
    wd.click("#units tbody tr[data-unit='Phường Đông Hòa']")
        .await;
    assert!(wd.exists("svg[data-indicator='on_time'] path.unit").await);
    assert!(wd.text("#legend").await.contains("Phường Đông Hòa"));

    // Vietnamese.
    wd.click("#lang").await;
    wd.wait_until(
        "Vietnamese title",
        Duration::from_secs(5),
        "h1",
        "Chỉ số phục vụ người dân, doanh nghiệp",
    )
    .await;
    let head = wd.text("#units thead").await;
    for want in [
        "Đơn vị",
        "Đúng hạn (2.1)",
        "Trực tuyến (3.3)",
        "Số hóa (4.2)",
    ] {
        assert!(head.contains(want), "{want} in {head}");
    }
    assert!(wd.text("#units tbody").await.contains("Toàn tỉnh"));
    let titles = wd.text("#charts").await;
    assert!(titles.contains("Thanh toán trực tuyến (3.6)"), "{titles}");
    assert_eq!(
        wd.js(
            "return document.querySelectorAll('#charts svg.line-chart').length;",
            json!([])
        )
        .await,
        6
    );
    assert!(wd.exists("svg[data-indicator='on_time'] path.unit").await);
    assert_eq!(wd.text("#lang").await, "English");
    assert_eq!(
        wd.js("return document.documentElement.lang;", json!([]))
            .await,
        "vi"
    );
    let png = wd.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"));
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("indicators.png"), &png).unwrap();
    wd.quit().await;
    running.shutdown().await;
}
