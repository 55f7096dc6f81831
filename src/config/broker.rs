//! `[broker]`: RabbitMQ, or the embedded durable queue under `data_dir`.

use std::path::PathBuf;

use serde::Deserialize;

use super::defaults;
use super::secrets::{url_has_password, SecretRef};

#[derive(Debug, Clone, Deserialize)]
pub struct BrokerSection {
    /// `amqp://user@host:5672/vhost` for RabbitMQ (password by `password`); absent = embedded.
    #[serde(default)]
    pub url: Option<String>,
    /// RabbitMQ password, by reference; inserted into the URL at connect time.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// Unacked deliveries per consumer. Default 256.
    #[serde(default = "d_prefetch")]
    pub prefetch: u16,
    /// Queues per route; keys are hashed onto them, each consumed by one active consumer.
    /// Default 1.
    #[serde(default = "d_partitions")]
    pub partitions: u16,
    /// Redeliveries without an ack before the broker dead-letters a message. Default 20.
    #[serde(default = "d_delivery_limit")]
    pub delivery_limit: u32,
    /// CA certificate(s), PEM, the broker's certificate must chain to (and name the URL's
    /// host); required by `amqps://`. Relative to the file.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM chain) presented to RabbitMQ; with `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Key of `client_cert` (PEM).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// The agencies' fan-out's name: its route is `agencies.<name>`, its queues
    /// `gw.route.agencies.<name>.p<N>`. Every instance of one gateway shares it; two gateways
    /// on one broker (vhost) need distinct ones. Default `fanout`.
    #[serde(default = "d_agencies_fanout")]
    pub agencies_fanout: String,
}

impl Default for BrokerSection {
    fn default() -> Self {
        Self {
            url: None,
            password: None,
            prefetch: d_prefetch(),
            partitions: d_partitions(),
            delivery_limit: d_delivery_limit(),
            ca: None,
            client_cert: None,
            client_key: None,
            agencies_fanout: d_agencies_fanout(),
        }
    }
}

fn d_prefetch() -> u16 {
    defaults::PREFETCH
}
fn d_partitions() -> u16 {
    defaults::PARTITIONS
}
fn d_delivery_limit() -> u32 {
    defaults::DELIVERY_LIMIT
}
fn d_agencies_fanout() -> String {
    defaults::AGENCIES_FANOUT.to_string()
}

/// Check `broker.url` (its form; no password in it) and `broker.agencies_fanout` (a name).
pub(super) fn validate_url(b: &BrokerSection, p: &mut impl FnMut(String, String, &str)) {
    if !super::names::valid_name(&b.agencies_fanout) {
        p(
            "broker.agencies_fanout".into(),
            format!("`{}` is not a name", b.agencies_fanout),
            "use lower-case letters, digits, `-` and `_`",
        );
    }
    if let Some(url) = &b.url {
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            p(
                "broker.url".into(),
                format!("`{url}` is not an AMQP URL"),
                "write amqp://user@host:5672/%2f, or remove it to use the embedded queue",
            );
        }
        if url_has_password(url) {
            p(
                "broker.url".into(),
                "the URL contains a password".into(),
                "move it to broker.password = { env = \"NAME\" }",
            );
        }
        let tls = url.starts_with("amqps://");
        if tls && b.ca.is_none() {
            p(
                "broker.ca".into(),
                "an amqps:// URL needs the CA the broker's certificate chains to".into(),
                "set broker.ca = \"/path/to/rabbitmq-ca.pem\"",
            );
        }
        if !tls && (b.ca.is_some() || b.client_cert.is_some()) {
            p(
                "broker.ca".into(),
                "TLS files are set but the URL is plain amqp://".into(),
                "write amqps://user@host:5671/%2f, or remove broker.ca/client_cert/client_key",
            );
        }
    } else if b.ca.is_some() || b.client_cert.is_some() || b.client_key.is_some() {
        p(
            "broker.ca".into(),
            "TLS files are set but the broker is the embedded queue (no broker.url)".into(),
            "set broker.url = \"amqps://…\", or remove broker.ca/client_cert/client_key",
        );
    }
    if b.client_cert.is_some() != b.client_key.is_some() {
        p(
            "broker.client_cert".into(),
            "a client certificate needs its key, and a key its certificate".into(),
            "set both broker.client_cert and broker.client_key, or neither",
        );
    }
}

/// Check the broker's numeric limits.
pub(super) fn validate_limits(b: &BrokerSection, p: &mut impl FnMut(String, String, &str)) {
    if b.prefetch == 0 {
        p(
            "broker.prefetch".into(),
            "must be at least 1".into(),
            "set a value such as 256",
        );
    }
    if b.partitions == 0 {
        p(
            "broker.partitions".into(),
            "must be at least 1".into(),
            "set 1, or more to spread keys over several queues",
        );
    }
    if b.delivery_limit < 2 {
        p(
            "broker.delivery_limit".into(),
            "must be at least 2".into(),
            "set a value such as 20",
        );
    }
}
