//! What the store's PostgreSQL tests share: where PostgreSQL is, an admin connection (or,
//! off CI, a printed reason to skip), and a short unique tag for schema names.

use std::time::Duration;

use tokio_postgres::NoTls;

pub fn url() -> String {
    std::env::var("GW_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// An admin connection, or `None` (after saying why) when PostgreSQL is not there.
pub async fn admin() -> Option<tokio_postgres::Client> {
    let attempt = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&url(), NoTls),
    )
    .await;
    let reason = match attempt {
        Ok(Ok((client, connection))) => {
            tokio::spawn(connection);
            return Some(client);
        }
        Ok(Err(e)) => format!("cannot connect to {}: {e}", url()),
        Err(_) => format!("no answer from {} within 5 s", url()),
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("PostgreSQL is required when CI=true: {reason}");
    }
    eprintln!("skipping: PostgreSQL is not available ({reason})");
    None
}

pub fn tag() -> String {
    let tag = uuid::Uuid::now_v7().simple().to_string();
    tag[tag.len() - 8..].to_owned()
}
