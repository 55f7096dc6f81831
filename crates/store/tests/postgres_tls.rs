//! The store over TLS (verify-full) against a real PostgreSQL with `ssl = on`: a private
//! cluster started for this file (the shared one on 5432 is never reconfigured), its server
//! certificate from the example PKI (`certs-example/server.pem`, SAN `localhost`,
//! `127.0.0.1`), TCP without TLS rejected by its `pg_hba.conf`, so a store that works here
//! did use TLS.
//!
//! Needs PostgreSQL's binaries, `runuser` and root (to start a cluster as `postgres`). When
//! they are missing the tests print why and pass, unless `CI=true`: then they fail.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gw_store::postgres::PgStore;
use gw_store::suite::{self, Scenario};
use gw_store::{evidence_suite, PgTls, TlsFiles};
use gw_testkit::services::{PgCluster, PgServerTls};

fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../certs-example")
}

/// A private TLS cluster whose role `certuser` needs a client certificate, or `None` (after
/// saying why) when one cannot be started here.
fn cluster() -> Option<PgCluster> {
    let c = certs();
    let reason = if PgCluster::available() {
        let tls = PgServerTls {
            cert_chain: &[&c.join("server.pem"), &c.join("intermediate-ca.pem")],
            key: &c.join("server.key"),
            client_ca: Some(&c.join("chain.pem")),
        };
        match PgCluster::start_tls(&tls) {
            Ok(cluster) => return Some(cluster),
            Err(e) => format!("the private PostgreSQL with TLS did not start: {e}"),
        }
    } else {
        "no PostgreSQL binaries, runuser or root here".to_owned()
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("a private PostgreSQL with TLS is required when CI=true: {reason}");
    }
    eprintln!("skipping: {reason}");
    None
}

fn tls(ca: &str) -> PgTls {
    PgTls::from_files(&TlsFiles {
        ca: certs().join(ca),
        ..TlsFiles::default()
    })
    .expect("CA file")
}

fn url(host: &str, port: u16, user: &str, schema: &str, extra: &str) -> String {
    format!("postgres://{user}@{host}:{port}/test?schema={schema}{extra}")
}

async fn refusal(url: &str, tls: Option<PgTls>) -> String {
    match PgStore::connect_tls(url, tls).await {
        Ok(_) => panic!("{url} connected; it must have been refused"),
        Err(e) => {
            eprintln!("refused as expected: {e}");
            e.to_string()
        }
    }
}

macro_rules! scenarios {
    ($($m:ident :: $name:ident),* $(,)?) => {
        [$((stringify!($name), (|s| Box::pin($m::$name(s))) as Scenario)),*]
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_works_over_tls_and_refuses_what_it_must() {
    let Some(pg) = cluster() else { return };
    let port = pg.port;

    // The right CA, by name and by address: the whole store suite passes.
    let all = scenarios![
        suite::record_and_read_back,
        suite::empty_batch_is_a_no_op,
        suite::first_outcome_wins,
        suite::natural_key_idempotency,
        suite::versions_only_move_forward,
        suite::batch_is_atomic,
        suite::recording_a_batch_twice_is_a_no_op,
        suite::dead_letters_list_and_get,
        suite::replay_exactly_once_under_concurrency,
        suite::drop_exactly_once_under_concurrency,
        suite::trail_by_key_is_ordered,
        suite::open_dead_letters_count,
        suite::vietnamese_text_round_trips,
        suite::ready_answers,
        suite::accepted_versions_only_move_forward,
        suite::accepted_duplicates_in_a_batch_resolve_to_the_max,
        suite::batch_with_outcomes_and_accepted_versions_is_atomic,
        suite::versions_reads_both_per_route_and_destination,
        suite::signatures_are_remembered_once_until_they_expire,
        suite::claims_have_one_winner_under_concurrency,
        suite::expired_claim_mid_send_is_in_doubt,
        suite::claim_older_than_delivered_is_refused,
        suite::claims_are_released_with_the_outcome,
        evidence_suite::evidence_records_chain_and_are_written_once,
        evidence_suite::evidence_chains_grow_concurrently,
    ];
    for (i, (name, scenario)) in all.into_iter().enumerate() {
        let host = if i % 2 == 0 { "localhost" } else { "127.0.0.1" };
        let schema = format!("tls_{i}");
        let store = PgStore::connect_tls(
            &url(host, port, "postgres", &schema, "&sslmode=verify-full"),
            Some(tls("root-ca.pem")),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: connect over TLS to {host}: {e}"));
        scenario(Arc::new(store)).await;
        eprintln!("over TLS: {name} passed");
    }

    // Through `open_tls`, the gateway's entry point; leadership sessions use TLS too (the
    // server rejects plain TCP, so a lead taken here went over TLS).
    let store = gw_store::open_tls(
        &url("localhost", port, "postgres", "tls_open", ""),
        Some(tls("root-ca.pem")),
    )
    .await
    .expect("open_tls");
    let lead = store
        .try_lead("tls-job", "t1", std::time::Duration::from_secs(6))
        .await
        .expect("lead over TLS");
    assert!(lead.is_some(), "the only contender leads");

    // The payment and signature stores open through the same backend choice and reach this
    // server over TLS too (it rejects plain TCP); without the TLS they are refused.
    let payments = gw_store::payments::open_tls(
        &url("localhost", port, "postgres", "tls_pay", ""),
        Some(tls("root-ca.pem")),
    )
    .await
    .expect("payments::open_tls");
    gw_store::payments::suite::all(payments.as_ref()).await;
    let signatures = gw_store::signatures::open_tls(
        &url("127.0.0.1", port, "postgres", "tls_sig", ""),
        Some(tls("root-ca.pem")),
    )
    .await
    .expect("signatures::open_tls");
    signatures
        .create(gw_store::signatures::suite::request(
            "tls-1", "csc", 1_000_000,
        ))
        .await
        .expect("a signature request over TLS");
    assert!(signatures.get("tls-1").await.unwrap().is_some());
    for e in [
        gw_store::payments::open(&url("127.0.0.1", port, "postgres", "tls_pay", ""))
            .await
            .err()
            .map(|e| e.to_string()),
        gw_store::signatures::open(&url("127.0.0.1", port, "postgres", "tls_sig", ""))
            .await
            .err()
            .map(|e| e.to_string()),
    ] {
        let e = e.expect("plain TCP must be refused by this server");
        assert!(e.contains("no encryption") || e.contains("pg_hba"), "{e}");
    }

    // Plain TCP is rejected by this server: the successes above were TLS.
    let e = refusal(&url("127.0.0.1", port, "postgres", "tls_x", ""), None).await;
    assert!(e.contains("no encryption") || e.contains("pg_hba"), "{e}");

    // A CA the server's certificate does not chain to.
    let e = refusal(
        &url(
            "localhost",
            port,
            "postgres",
            "tls_x",
            "&sslmode=verify-full",
        ),
        Some(tls("other-root-ca.pem")),
    )
    .await;
    assert!(
        e.contains("not issued by a CA in the configured CA file") && e.contains("UnknownIssuer"),
        "{e}"
    );

    // A host name the certificate does not name (127.0.0.2 reaches the same server).
    let e = refusal(
        &url(
            "127.0.0.2",
            port,
            "postgres",
            "tls_x",
            "&sslmode=verify-full",
        ),
        Some(tls("root-ca.pem")),
    )
    .await;
    assert!(
        e.contains("not valid for the host name in the URL") && e.contains("127.0.0.2"),
        "{e}"
    );

    // Modes that do not check the server are refused before connecting; verify-full needs a CA.
    for mode in ["require", "verify-ca"] {
        let e = refusal(
            &url(
                "localhost",
                port,
                "postgres",
                "tls_x",
                &format!("&sslmode={mode}"),
            ),
            Some(tls("root-ca.pem")),
        )
        .await;
        assert!(
            e.contains(&format!("sslmode={mode} is refused")) && e.contains("verify-full"),
            "{e}"
        );
    }
    let e = refusal(
        &url(
            "localhost",
            port,
            "postgres",
            "tls_x",
            "&sslmode=verify-full",
        ),
        None,
    )
    .await;
    assert!(e.contains("store.ca"), "{e}");

    // The client certificate: `certuser` may log in only with one.
    let e = refusal(
        &url("localhost", port, PgCluster::CERT_USER, "tls_cert", ""),
        Some(tls("root-ca.pem")),
    )
    .await;
    assert!(e.contains("requires a valid client certificate"), "{e}");
    let with_cert = PgTls::from_files(&TlsFiles {
        ca: certs().join("root-ca.pem"),
        client_cert: Some(certs().join("client.pem")),
        client_key: Some(certs().join("client.key")),
    })
    .expect("client identity");
    let store = PgStore::connect_tls(
        &url("localhost", port, PgCluster::CERT_USER, "tls_cert", ""),
        Some(with_cert),
    )
    .await
    .expect("log in with the client certificate");
    suite::record_and_read_back(Arc::new(store)).await;
}
