//! The service-quality index as people read it: the ops API's month-by-month series and the
//! lowest-communes list (with its minimum sample) over a running gateway fed real events, and
//! `gateway indicators report --format pdf` read back by independent tools (qpdf checks the
//! file, pdftotext extracts the Vietnamese text and the figures), with an empty period
//! printing N/A.
//!
//! Hand-worked figures (embedded queue + SQLite store):
//! - September 2026, "Xã An Phú": 4 dossiers due 10 Sep, 3 processed on 9 Sep, 1 on 14 Sep:
//!   on time 3/4 = 75.00 %; 2 of 4 online = 50.00 %.
//! - October 2026: "Xã An Phú" 2 dossiers, both on time (100.00 %); "Phường Đông Hòa" 1 dossier
//!   processed after its due date (0.00 %); the province 2/3 = 66.67 %.
//! - August 2026: no dossier: N/A (null), never 0.
//!
//! Needs `qpdf` and `pdftotext` (Debian: qpdf, poppler-utils) and a DejaVu font
//! (fonts-dejavu-core) for the PDF part: skipped with the reason without them, failing when
//! `CI=true`. The October PDF is kept as `target/browser-artifacts/indicators-2026-10.pdf`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{config_text, load, unique, Backend};
use gateway::app;
use gateway::model::envelope::Envelope;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const VIEWER: &str = "viewer-token-0123456789";

fn config(dir: &Path) -> String {
    std::env::set_var("GW_TEST_IXR_VIEWER", VIEWER);
    let text = config_text(
        Backend::Embedded,
        dir,
        &unique("ixr"),
        "http://127.0.0.1:9/",
        "",
    );
    let ops = "[ops]\nlisten = \"127.0.0.1:0\"\n";
    assert!(text.contains(ops));
    text.replace(
        ops,
        "[ops]\nlisten = \"127.0.0.1:0\"\ntokens = [{ name = \"victor\", role = \"viewer\", token = { env = \"GW_TEST_IXR_VIEWER\" } }]\n",
    ) + "\n[indicators]\nlowest_min_dossiers = 3\n"
}

/// A processed dossier's snapshot.
fn dossier(
    code: &str,
    unit: &str,
    received: &str,
    due: &str,
    done: &str,
    online: bool,
) -> Envelope {
    let payload = json!({
        "code": code, "version": 1, "procedure_code": "1.001193",
        "owner": {"name": "A", "kind": "citizen"},
        "summary": "s", "received_at": received, "due_at": due,
        "finished_at": done, "status": "processed", "handling_unit": unit,
        "fees": [], "attachments": [], "progress": [], "results": [],
        "channel": if online { "online" } else { "in_person" },
    });
    let mut e = Envelope::new("dossier.upserted", code, "onestop", payload);
    e.version = Some(1);
    e
}

fn events() -> Vec<Envelope> {
    let an_phu = "Xã An Phú";
    let dong_hoa = "Phường Đông Hòa";
    let sep = |d: &str| format!("2026-09-{d}T08:00:00+07:00");
    let oct = |d: &str| format!("2026-10-{d}T08:00:00+07:00");
    let mut out = Vec::new();
    for (i, done) in ["09", "09", "09", "14"].iter().enumerate() {
        out.push(dossier(
            &format!("IXR-S{i}"),
            an_phu,
            &sep("07"),
            "2026-09-10T17:00:00+07:00",
            &sep(done),
            i < 2,
        ));
    }
    for i in 0..2 {
        out.push(dossier(
            &format!("IXR-O{i}"),
            an_phu,
            &oct("05"),
            "2026-10-08T17:00:00+07:00",
            &oct("07"),
            false,
        ));
    }
    out.push(dossier(
        "IXR-D0",
        dong_hoa,
        &oct("05"),
        "2026-10-08T17:00:00+07:00",
        &oct("12"),
        false,
    ));
    out
}

async fn get(client: &reqwest::Client, base: &str, path: &str) -> (u16, Value) {
    let r = client
        .get(format!("{base}{path}"))
        .bearer_auth(VIEWER)
        .send()
        .await
        .expect("the ops listener answers");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn on_time(point: &Value) -> (Value, u64) {
    (
        point["on_time"]["percent"].clone(),
        point["on_time"]["den"].as_u64().unwrap(),
    )
}

/// Whether the PDF tools are here (skip with the reason, or fail under CI).
fn pdf_tools() -> bool {
    let have = |tool: &str| {
        std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok()
    };
    let font = gateway::indicators::pdf::find_font(None).is_ok();
    if have("qpdf") && have("pdftotext") && font {
        return true;
    }
    let why = "the PDF check needs qpdf, pdftotext and a DejaVu font: apt-get install qpdf poppler-utils fonts-dejavu-core";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    false
}

/// Run `gateway indicators …` with the test's environment; (exit code, stdout, stderr).
fn cli(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("indicators")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("GW_TEST_SOURCE_TOKEN", common::TOKEN)
        .env("GW_TEST_IXR_VIEWER", VIEWER)
        .env_remove("GATEWAY_PDF_FONT")
        .output()
        .expect("the gateway binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pdf_text(path: &Path) -> String {
    let check = std::process::Command::new("qpdf")
        .arg("--check")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "qpdf --check: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let text = std::process::Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(path)
        .arg("-")
        .output()
        .unwrap();
    assert!(text.status.success());
    String::from_utf8(text.stdout).expect("pdftotext writes UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_lowest_and_pdf_report_from_real_events() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path());
    let running = app::start(&load(&text), CancellationToken::new())
        .await
        .expect("the gateway starts");
    let base = format!("http://{}", running.ops_addr);
    let evs = events();
    for e in &evs {
        running.engine.publish(e).await.unwrap();
    }
    let client = reqwest::Client::new();

    // Wait until the consumer applied all 7 dossiers (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let series = loop {
        let (s, v) = get(
            &client,
            &base,
            "/api/v1/indicators/series?to=2026-10&months=3&level=unit",
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let counted: u64 = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["points"].as_array().unwrap().iter().map(|p| on_time(p).1))
            .sum();
        if counted == 7 {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the index did not take the 7 dossiers: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(series["months"], json!(["2026-08", "2026-09", "2026-10"]));
    assert_eq!(series["level"], "unit");
    let row = |key: &str| {
        series["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .unwrap_or_else(|| panic!("no row {key}: {series}"))
            .clone()
    };
    let an_phu = row("Xã An Phú");
    let p = an_phu["points"].as_array().unwrap();
    assert_eq!(on_time(&p[0]), (Value::Null, 0), "August: N/A, not 0");
    assert_eq!(on_time(&p[1]), (json!(75.0), 4));
    assert_eq!(p[1]["online"]["percent"], json!(50.0));
    assert_eq!(on_time(&p[2]), (json!(100.0), 2));
    let dong_hoa = row("Phường Đông Hòa");
    let p = dong_hoa["points"].as_array().unwrap();
    assert_eq!(on_time(&p[1]), (Value::Null, 0));
    assert_eq!(on_time(&p[2]), (json!(0.0), 1));

    let (s, prov) = get(
        &client,
        &base,
        "/api/v1/indicators/series?to=2026-10&months=2",
    )
    .await;
    assert_eq!(s, 200, "{prov}");
    assert_eq!(prov["level"], "province");
    let p = prov["rows"][0]["points"].as_array().unwrap();
    assert_eq!(prov["rows"][0]["key"], "province");
    assert_eq!(on_time(&p[0]), (json!(75.0), 4));
    assert_eq!(on_time(&p[1]), (json!(66.67), 3));
    assert_eq!(p[1]["on_time_points"], json!(13.33));

    // Bad parameters name themselves.
    for (query, code) in [
        ("/api/v1/indicators/series?to=2026-Q4", "bad_period"),
        ("/api/v1/indicators/series?to=2026-13", "bad_period"),
        ("/api/v1/indicators/series?months=0", "bad_months"),
        ("/api/v1/indicators/series?months=37", "bad_months"),
        ("/api/v1/indicators/series?level=county", "bad_level"),
        ("/api/v1/indicators/lowest?count=0", "bad_count"),
        (
            "/api/v1/indicators/lowest?min_dossiers=-1",
            "bad_min_dossiers",
        ),
        ("/api/v1/indicators/lowest?period=nov", "bad_period"),
    ] {
        let (s, v) = get(&client, &base, query).await;
        assert_eq!(s, 400, "{query}: {v}");
        assert_eq!(v["error"]["code"], code, "{query}: {v}");
    }
    let r = client
        .get(format!("{base}/api/v1/indicators/series"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Lowest: with the configured minimum (3), Đông Hòa's single late dossier is not ranked.
    let (s, l) = get(&client, &base, "/api/v1/indicators/lowest?period=2026-10").await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(l["min_dossiers"], 3);
    assert_eq!(l["units"], json!([]), "{l}");
    assert_eq!(l["too_few"], json!(["Phường Đông Hòa", "Xã An Phú"]));
    let (_, l) = get(
        &client,
        &base,
        "/api/v1/indicators/lowest?period=2026-10&min_dossiers=1",
    )
    .await;
    let keys: Vec<_> = l["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["key"].clone())
        .collect();
    assert_eq!(keys, [json!("Phường Đông Hòa"), json!("Xã An Phú")]);
    let (_, l) = get(&client, &base, "/api/v1/indicators/lowest?period=2026-09").await;
    assert_eq!(l["units"][0]["key"], "Xã An Phú", "4 dossiers ≥ 3: ranked");
    assert_eq!(l["units"][0]["on_time"]["percent"], json!(75.0));

    // The page and its script are served (the browser test draws them).
    let page = client
        .get(format!("{base}/indicators"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("/assets/indicators.js"));

    running.cancel.cancel();
    running.shutdown().await;

    // The CLI over the same store (the gateway is stopped: the data directory is free).
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, &text).unwrap();
    let (code, out, err) = cli(
        &cfg,
        &["lowest", "--period", "2026-10", "--min-dossiers", "1"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let l: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(l["units"][0]["key"], "Phường Đông Hòa");
    assert_eq!(l["min_dossiers"], 1);
    let (code, _, err) = cli(&cfg, &["report", "--period", "2026-10", "--format", "pdf"]);
    assert_eq!(code, Some(2), "--out is required: {err}");
    assert!(err.contains("--out"), "{err}");
    let (code, _, err) = cli(
        &cfg,
        &[
            "report",
            "--period",
            "2026-10",
            "--format",
            "pdf",
            "--out",
            "x.pdf",
            "--font",
            "/nonexistent/font.ttf",
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nonexistent/font.ttf"), "{err}");

    if !pdf_tools() {
        return;
    }
    let pdf = dir.path().join("2026-10.pdf");
    let (code, out, err) = cli(
        &cfg,
        &["report", "--period", "2026-10", "--format", "pdf", "--out"]
            .into_iter()
            .chain([pdf.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let text = pdf_text(&pdf);
    // Kept beside the browser tests' screenshots, to look at.
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(&pdf, out.join("indicators-2026-10.pdf")).unwrap();
    for want in [
        "Báo cáo chỉ số phục vụ người dân, doanh nghiệp",
        "Toàn tỉnh",
        "Xã An Phú",
        "Phường Đông Hòa",
        "Đúng hạn",
        "Trực tuyến",
        "66.67",
        "13.33",
        "100.00",
        "Kỳ báo cáo (period) 2026-10",
        "Đúng hạn (2.1) %",
    ] {
        assert!(
            text.contains(want),
            "`{want}` missing from the PDF's text:\n{text}"
        );
    }
    let an_phu_line = text.lines().find(|l| l.contains("Xã An Phú")).unwrap();
    assert!(an_phu_line.contains("100.00"), "{an_phu_line}");
    assert!(
        an_phu_line.contains("N/A"),
        "nothing fee-bearing: 3.6 is N/A: {an_phu_line}"
    );

    // An empty period: N/A everywhere, said in words, never 0 %.
    let empty = dir.path().join("2025-01.pdf");
    let (code, out, err) = cli(
        &cfg,
        &["report", "--period", "2025-01", "--format", "pdf", "--out"]
            .into_iter()
            .chain([empty.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let text = pdf_text(&empty);
    let province = text.lines().find(|l| l.contains("Toàn tỉnh")).unwrap();
    assert_eq!(province.matches("N/A").count(), 8, "{province}");
    assert!(!province.contains("0.00"), "{province}");
    assert!(text.contains("Không có hồ sơ nào trong kỳ"), "{text}");
    assert!(!text.contains("Xã An Phú"), "{text}");
}
