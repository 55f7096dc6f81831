//! What the store's PostgreSQL tests share: where PostgreSQL is, an admin connection (or,
//! off CI, a printed reason to skip), and a short unique tag for schema names.

// Each test binary uses the part it needs.
#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex};
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

/// Gives each name a schema of its own (`gwt_<tag>_<prefix><name>`).
pub type SchemaFor = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Runs `run` (a suite on PostgreSQL) with fresh schemas, then drops every schema it was given,
/// also when it panicked (the panic is then carried on). Returns at once, after saying why,
/// when PostgreSQL is not there off CI.
pub async fn in_fresh_schemas<Fut>(prefix: &str, run: impl FnOnce(SchemaFor) -> Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(admin) = admin().await else { return };
    let prefix = format!("gwt_{}_{prefix}", tag());
    let schemas = Arc::new(Mutex::new(Vec::<String>::new()));
    let made = schemas.clone();
    let schema_for: SchemaFor = Arc::new(move |name: &str| {
        let schema = format!("{prefix}{name}");
        made.lock().unwrap().push(schema.clone());
        schema
    });
    let result = tokio::spawn(run(schema_for)).await;
    let mut names = schemas.lock().unwrap().clone();
    names.sort();
    names.dedup();
    for schema in names {
        admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .unwrap();
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
