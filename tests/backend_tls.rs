//! TLS to the backends from the gateway's side: `check-config` warns about plain-text
//! backends off this machine (and names the fix) without failing, refuses TLS files it cannot
//! use, and the gateway runs end to end over TLS to a private PostgreSQL (`ssl = on`, plain
//! TCP rejected) and a private RabbitMQ TLS listener (client certificates required), both with
//! the example PKI (`certs-example/`). The shared RabbitMQ and PostgreSQL are not touched.
//!
//! The end-to-end test needs RabbitMQ's scripts and PostgreSQL's binaries with root; without
//! them it prints why and passes, unless `CI=true`: then it fails.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use gateway::app;
use gw_contract_tests::sink::{Faults, Sink};
use gw_testkit::services::{PgCluster, PgServerTls, RabbitNode, RabbitServerTls};
use tokio_util::sync::CancellationToken;

fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-example")
}

fn check_config(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("gw.toml");
    std::fs::write(&f, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("check-config")
        .arg(&f)
        .env("GW_PW", "x")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_warns_about_plain_text_backends_and_names_the_fix() {
    // Plain text to hosts off this machine: warnings with the fix, and the exit code stays 0.
    let (code, out, err) = check_config(
        "[broker]\nurl = \"amqp://gw@rabbit.internal:5672/%2f\"\n\
         [store]\nurl = \"postgres://gw@db.internal:5432/gw\"\n",
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("warning: broker.url: plain-text AMQP to rabbit.internal")
            && out.contains("write amqps://")
            && out.contains("broker.ca"),
        "{out}"
    );
    assert!(
        out.contains("warning: store.url: plain-text PostgreSQL to db.internal")
            && out.contains("store.ca")
            && out.contains("sslmode=verify-full"),
        "{out}"
    );

    // The same hosts over TLS with the CA files: no warning.
    let ca = certs().join("root-ca.pem");
    let tls = format!(
        "[broker]\nurl = \"amqps://gw@rabbit.internal:5671/%2f\"\nca = \"{ca}\"\n\
         [store]\nurl = \"postgres://gw@db.internal:5432/gw?sslmode=verify-full\"\nca = \"{ca}\"\n\
         client_cert = \"{cert}\"\nclient_key = \"{key}\"\n",
        ca = ca.display(),
        cert = certs().join("client.pem").display(),
        key = certs().join("client.key").display(),
    );
    let (code, out, err) = check_config(&tls);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains("warning: broker.url"), "{out}");
    assert!(!out.contains("warning: store.url"), "{out}");

    // On this machine, plain text is not warned about.
    let (code, out, _) = check_config(
        "[broker]\nurl = \"amqp://gw@127.0.0.1:5672/%2f\"\n\
         [store]\nurl = \"postgres://gw@localhost:5432/gw\"\n",
    );
    assert_eq!(code, Some(0));
    assert!(!out.contains("warning: broker.url") && !out.contains("warning: store.url"));

    // A CA file that is not there fails check-config, naming the key and the file.
    let missing = tls.replacen(
        &format!("ca = \"{}\"", ca.display()),
        "ca = \"/nonexistent/db-ca.pem\"",
        2,
    );
    let (code, _, err) = check_config(&missing);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "store: configuration: store TLS: cannot read the CA file /nonexistent/db-ca.pem"
        ),
        "{err}"
    );

    // Contradictions and weak modes are problems of the file, with the fix.
    let (code, _, err) = check_config(
        "[broker]\nurl = \"amqps://gw@rabbit.internal:5671/%2f\"\n\
         [store]\nurl = \"postgres://gw@db.internal:5432/gw?sslmode=require\"\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("broker.ca: an amqps:// URL needs the CA"),
        "{err}"
    );
    assert!(
        err.contains("store.url: sslmode=require does not check that the server is the one in the URL: write sslmode=verify-full"),
        "{err}"
    );
}

fn services() -> Option<(PgCluster, RabbitNode)> {
    let reason = if !PgCluster::available() {
        "no PostgreSQL binaries, runuser or root here".to_owned()
    } else if !RabbitNode::available() {
        "RabbitMQ's scripts are not installed here".to_owned()
    } else {
        let c = certs();
        let rabbit = std::thread::spawn(move || {
            RabbitNode::start_tls(&RabbitServerTls {
                cert: &c.join("server.pem"),
                key: &c.join("server.key"),
                cacert: &c.join("chain.pem"),
                require_client_cert: true,
            })
        });
        let c = certs();
        let pg = PgCluster::start_tls(&PgServerTls {
            cert_chain: &[&c.join("server.pem"), &c.join("intermediate-ca.pem")],
            key: &c.join("server.key"),
            client_ca: None,
        });
        match (pg, rabbit.join().expect("start thread")) {
            (Ok(pg), Ok(rabbit)) => return Some((pg, rabbit)),
            (Err(e), _) => format!("the private PostgreSQL with TLS did not start: {e}"),
            (_, Err(e)) => format!("the private RabbitMQ with TLS did not start: {e}"),
        }
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("private TLS services are required when CI=true: {reason}");
    }
    eprintln!("skipping: {reason}");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_runs_over_tls_to_both_backends() {
    let Some((pg, rabbit)) = tokio::task::spawn_blocking(services).await.unwrap() else {
        return;
    };
    let sink = Sink::start(0, Faults::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = certs();
    let text = config_text(Backend::Embedded, dir.path(), "tls", &sink.url(), "")
        .replacen(
            "[broker]\n",
            &format!(
                "[broker]\nurl = \"amqps://guest@localhost:{}/%2f\"\n\
                 password = {{ env = \"GW_TEST_AMQP_PASSWORD\" }}\nca = \"{}\"\n\
                 client_cert = \"{}\"\nclient_key = \"{}\"\n",
                rabbit.tls_port.unwrap(),
                c.join("root-ca.pem").display(),
                c.join("client.pem").display(),
                c.join("client.key").display()
            ),
            1,
        )
        .replacen(
            "[store]\n",
            &format!(
                "[store]\nurl = \"postgres://postgres@localhost:{}/test?sslmode=verify-full\"\n\
                 ca = \"{}\"\n",
                pg.port,
                c.join("root-ca.pem").display()
            ),
            1,
        );
    let loaded = load(&text);
    assert!(loaded.warnings().is_empty(), "{:?}", loaded.warnings());
    let running = app::start(&loaded, CancellationToken::new())
        .await
        .expect("the gateway starts over TLS");
    assert_eq!(running.engine.store.kind(), "postgres");
    let client = reqwest::Client::new();
    let mut expected = BTreeMap::new();
    for d in 0..10 {
        let key = format!("TLS-{d:03}");
        for v in 1..=2 {
            assert_eq!(
                post_event(&client, running.inbound_addr, &key, v).await,
                202
            );
        }
        expected.insert(key, vec![1, 2]);
    }
    let m = running.engine.metrics.clone();
    eventually(Duration::from_secs(60), "20 events settled", || {
        m.outcome_total("delivered") + m.outcome_total("superseded") >= 20
    })
    .await;
    let check = sink.check(&expected);
    assert!(check.missing.is_empty(), "missing: {:?}", check.missing);
    assert_eq!(check.duplicates, 0, "duplicate effects");
    assert_eq!(
        running
            .engine
            .store
            .delivered_version("sink", "TLS-000")
            .await
            .unwrap(),
        Some(2)
    );
    running.shutdown().await;
}
