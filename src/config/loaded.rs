//! A loaded configuration: [`load`] and [`parse`] read a file or text into the root
//! [`Config`](super::Config), run every check, and give a [`Loaded`] only when no problem was
//! found; [`Loaded`] also knows where the file came from, so relative paths, secret files and
//! the backends' URLs resolve against it.
//!
//! The top of the configuration's imports: it uses `document.rs` (reading), `references.rs`
//! (the validation driver) and the sections; nothing of the configuration imports it.

use std::path::{Path, PathBuf};

use super::document::{self, Config};
use super::payments::FeeCheck;
use super::problem::ConfigError;
use super::references;
use super::secrets::{with_password, SecretRef, UrlPasswordError};

/// A loaded, validated configuration and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The file (or `<embedded>`), for messages.
    pub origin: String,
    /// Folder relative paths and secret files resolve against.
    pub base: PathBuf,
}

/// Load and validate a file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let origin = path.display().to_string();
    let text = document::read(path, &origin)?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    parse(&text, &origin, base)
}

/// Parse and validate TOML text. `origin` names it in messages.
pub fn parse(text: &str, origin: &str, base: PathBuf) -> Result<Loaded, ConfigError> {
    let (config, mut problems) = document::deserialize(text, origin)?;
    references::validate(&config, &base, &mut problems, origin);
    if problems.is_empty() {
        Ok(Loaded {
            config,
            origin: origin.to_string(),
            base,
        })
    } else {
        Err(ConfigError { problems })
    }
}

impl Loaded {
    /// The embedded defaults: no file at all.
    pub fn embedded_defaults() -> Loaded {
        Loaded {
            config: Config::default(),
            origin: "<defaults>".into(),
            base: PathBuf::from("."),
        }
    }

    /// Broker URL with the password inserted, or the embedded queue's file.
    pub fn broker_url(&self) -> Result<String, UrlPasswordError> {
        match &self.config.broker.url {
            Some(url) => with_password(url, self.config.broker.password.as_ref(), &self.base),
            None => Ok(format!(
                "sqlite:{}",
                self.data_dir().join("queue.db").display()
            )),
        }
    }

    /// What `check-config` warns about without refusing: plain-text connections to a backend
    /// that is not on this machine.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let remote = |url: &str| {
            let u = reqwest::Url::parse(url).ok()?;
            let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
            let local = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => ip.is_loopback(),
                Err(_) => host == "localhost",
            };
            (!local).then(|| host.to_string())
        };
        if let Some(url) = &self.config.broker.url {
            if url.starts_with("amqp://") {
                if let Some(host) = remote(url) {
                    w.push(format!("broker.url: plain-text AMQP to {host}: the password and dossier data cross the network unencrypted; fix: write amqps://…:5671 and set broker.ca = \"/path/to/rabbitmq-ca.pem\" (README \"TLS to PostgreSQL and RabbitMQ\")"));
                }
            }
        }
        if let Some(p) = &self.config.payments {
            if p.fee_check == FeeCheck::Off {
                w.push("payments.fee_check = \"off\": order amounts are not checked against the dossier's fees; whoever holds payments.token can create an order for any amount".to_string());
            }
        }
        if let Some(url) = &self.config.store.url {
            if super::store::plain_text(&self.config.store) {
                if let Some(host) = remote(url) {
                    w.push(format!("store.url: plain-text PostgreSQL to {host}: the password and dossier data cross the network unencrypted; fix: set store.ca = \"/path/to/db-ca.pem\" and add sslmode=verify-full to the URL (README \"TLS to PostgreSQL and RabbitMQ\")"));
                }
            }
        }
        w
    }

    /// Store URL with the password inserted, or the SQLite file.
    pub fn store_url(&self) -> Result<String, UrlPasswordError> {
        match &self.config.store.url {
            Some(url) => with_password(url, self.config.store.password.as_ref(), &self.base),
            None => Ok(format!(
                "sqlite:{}",
                self.data_dir().join("store.db").display()
            )),
        }
    }

    /// A path the file names, resolved against the file's folder when relative.
    pub fn file_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    /// The TLS files of the store (`store.ca`, `client_cert`, `client_key`), resolved; `None`
    /// without `store.ca` (no TLS).
    pub fn store_tls_files(&self) -> Option<gw_store::TlsFiles> {
        let s = &self.config.store;
        Some(gw_store::TlsFiles {
            ca: self.file_path(s.ca.as_deref()?),
            client_cert: s.client_cert.as_deref().map(|p| self.file_path(p)),
            client_key: s.client_key.as_deref().map(|p| self.file_path(p)),
        })
    }

    /// The TLS files of the broker (`broker.ca`, `client_cert`, `client_key`), resolved, in
    /// that order; `None` without `broker.ca`.
    pub fn broker_tls_files(&self) -> Option<(PathBuf, Option<PathBuf>, Option<PathBuf>)> {
        let b = &self.config.broker;
        Some((
            self.file_path(b.ca.as_deref()?),
            b.client_cert.as_deref().map(|p| self.file_path(p)),
            b.client_key.as_deref().map(|p| self.file_path(p)),
        ))
    }

    pub fn data_dir(&self) -> PathBuf {
        let d = &self.config.gateway.data_dir;
        if d.is_absolute() {
            d.clone()
        } else {
            self.base.join(d)
        }
    }

    /// Every secret reference of the configuration, with the key that holds it
    /// (`sources.portal.token`), in file order of sections. `check-config` reads each one.
    pub fn secret_refs(&self) -> Vec<(String, &SecretRef)> {
        let c = &self.config;
        let mut v: Vec<(String, &SecretRef)> = Vec::new();
        if let Some(r) = &c.broker.password {
            v.push(("broker.password".into(), r));
        }
        if let Some(r) = &c.store.password {
            v.push(("store.password".into(), r));
        }
        for t in &c.ops.tokens {
            v.push((format!("ops.tokens[{}].token", t.name), &t.token));
        }
        for (name, s) in &c.sources {
            if let Some(r) = &s.token {
                v.push((format!("sources.{name}.token"), r));
            }
        }
        for (name, a) in &c.adapters {
            if let Some(r) = &a.bearer {
                v.push((format!("adapters.{name}.bearer"), r));
            }
            if let Some(r) = a.tls.as_ref().and_then(|t| t.client_key.as_ref()) {
                v.push((format!("adapters.{name}.tls.client_key"), r));
            }
            if let Some(d) = &a.dvcqg {
                if let Some(r) = &d.password {
                    v.push((format!("adapters.{name}.dvcqg.password"), r));
                }
                if let Some(r) = &d.client_secret {
                    v.push((format!("adapters.{name}.dvcqg.client_secret"), r));
                }
            }
            if let Some(x) = &a.axis {
                v.push((format!("adapters.{name}.axis.secret"), &x.secret));
            }
        }
        for (name, s) in &c.signing {
            if let Some(r) = &s.key_password {
                v.push((format!("signing.{name}.key_password"), r));
            }
            if let Some(r) = &s.pkcs12_password {
                v.push((format!("signing.{name}.pkcs12_password"), r));
            }
        }
        if let Some(p) = &c.payments {
            if let Some(r) = &p.token {
                v.push(("payments.token".into(), r));
            }
            for (name, s) in &p.vnpay {
                v.push((format!("payments.vnpay.{name}.hash_secret"), &s.hash_secret));
            }
            for (name, s) in &p.platform {
                v.push((format!("payments.platform.{name}.hash_key"), &s.hash_key));
            }
            for (name, s) in &p.paygov {
                v.push((format!("payments.paygov.{name}.secret_key"), &s.secret_key));
                v.push((
                    format!("payments.paygov.{name}.client_secret"),
                    &s.client_secret,
                ));
            }
            for (name, s) in &p.momo {
                v.push((format!("payments.momo.{name}.secret_key"), &s.secret_key));
            }
        }
        if let Some(r) = &c.evidence.body_key {
            v.push(("evidence.body_key".into(), r));
        }
        for (name, s) in &c.signers {
            if let Some(r) = &s.sp_password {
                v.push((format!("signers.{name}.sp_password"), r));
            }
            if let Some(r) = &s.client_secret {
                v.push((format!("signers.{name}.client_secret"), r));
            }
            if let Some(r) = s.tls.as_ref().and_then(|t| t.client_key.as_ref()) {
                v.push((format!("signers.{name}.tls.client_key"), r));
            }
        }
        v
    }
}
