//! The RabbitMQ broker over TLS (`amqps://`) against a real TLS listener: a private node
//! started for this file (the shared RabbitMQ on 5672 is never reconfigured), with the example
//! PKI's server certificate (`certs-example/server.pem`, SAN `localhost`, `127.0.0.1`) and
//! client certificates required (`fail_if_no_peer_cert`).
//!
//! Needs RabbitMQ's scripts; without them the test prints why and passes, unless `CI=true`:
//! then it fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gw_broker::amqp::{AmqpTls, AmqpTlsError};
use gw_broker::{conformance, Broker};
use gw_testkit::services::{RabbitNode, RabbitServerTls};

fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../certs-example")
}

async fn node() -> Option<RabbitNode> {
    let reason = if RabbitNode::available() {
        let started = tokio::task::spawn_blocking(|| {
            let c = certs();
            RabbitNode::start_tls(&RabbitServerTls {
                cert: &c.join("server.pem"),
                key: &c.join("server.key"),
                cacert: &c.join("chain.pem"),
                require_client_cert: true,
            })
        })
        .await
        .expect("start task");
        match started {
            Ok(n) => return Some(n),
            Err(e) => format!("the private RabbitMQ node with TLS did not start: {e}"),
        }
    } else {
        "RabbitMQ's scripts are not installed here".to_owned()
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("a private RabbitMQ with TLS is required when CI=true: {reason}");
    }
    eprintln!("skipping: {reason}");
    None
}

fn tls(ca: &str, client: bool) -> Result<AmqpTls, AmqpTlsError> {
    let c = certs();
    let (cert, key) = if client {
        (Some(c.join("client.pem")), Some(c.join("client.key")))
    } else {
        (None, None)
    };
    AmqpTls::from_files(&c.join(ca), cert.as_deref(), key.as_deref())
}

async fn refusal(url: &str, tls: Option<AmqpTls>) -> String {
    match gw_broker::open_tls(url, "t", tls).await {
        Ok(_) => panic!("{url} connected; it must have been refused"),
        Err(e) => {
            eprintln!("refused as expected: {e}");
            e.to_string()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_broker_works_over_tls_and_refuses_what_it_must() {
    let Some(node) = node().await else { return };
    let port = node.tls_port.expect("TLS port");
    let url = |host: &str| format!("amqps://guest:guest@{host}:{port}/%2f");

    // The right CA and a client certificate: the whole conformance suite passes over TLS.
    let broker: Arc<dyn Broker> = gw_broker::open_tls(
        &url("127.0.0.1"),
        "t",
        Some(tls("root-ca.pem", true).unwrap()),
    )
    .await
    .expect("connect over TLS");
    conformance::run_all(broker.clone()).await;
    broker.close().await;

    // A CA the broker's certificate does not chain to.
    let e = refusal(
        &url("127.0.0.1"),
        Some(tls("other-root-ca.pem", true).unwrap()),
    )
    .await;
    assert!(
        e.contains("not issued by a CA in the configured CA file") && e.contains("UnknownIssuer"),
        "{e}"
    );

    // A host the certificate does not name (127.0.0.2 reaches the same listener).
    let e = refusal(&url("127.0.0.2"), Some(tls("root-ca.pem", true).unwrap())).await;
    assert!(
        e.contains("not valid for the host name in the URL") && e.contains("127.0.0.2"),
        "{e}"
    );

    // This broker requires a client certificate: without one, the handshake fails.
    let e = refusal(&url("127.0.0.1"), Some(tls("root-ca.pem", false).unwrap())).await;
    assert!(
        e.contains("asks for a client certificate") && e.contains("broker.client_cert"),
        "{e}"
    );

    // amqps:// without a CA, and a CA with amqp://, are refused before connecting.
    let e = refusal(&url("127.0.0.1"), None).await;
    assert!(e.contains("broker.ca"), "{e}");
    let e = refusal(
        &format!("amqp://guest:guest@127.0.0.1:{}/%2f", node.port),
        Some(tls("root-ca.pem", true).unwrap()),
    )
    .await;
    assert!(e.contains("amqps://"), "{e}");
}
