//! `[adapters.NAME]`: destination adapters (connector, URL, TLS, quota, DVCQG settings).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::defaults;
use super::duration::Dur;
use super::names::valid_name;
use super::secrets::SecretRef;

/// A destination adapter.
/// Every connector kind an adapter's `connector` may name, the one list: the validator
/// refuses any other with this list, and `crate::connectors::build` builds each one (its test
/// walks this list, so a kind cannot be accepted here and unknown there).
pub const CONNECTORS: &[&str] = &["http", "dvcqg", "axis"];

#[derive(Debug, Clone, Deserialize)]
pub struct AdapterSection {
    /// Connector kind, one of [`CONNECTORS`]: `http` (a generic JSON POST) or `dvcqg` (the
    /// national public service portal).
    pub connector: String,
    /// Where to send.
    pub url: String,
    /// Whole request timeout. Default 30s.
    #[serde(default = "d_http_timeout")]
    pub timeout: Dur,
    /// Connect timeout. Default 10s.
    #[serde(default = "d_http_connect_timeout")]
    pub connect_timeout: Dur,
    /// Bearer token sent as `Authorization`, by reference.
    #[serde(default)]
    pub bearer: Option<SecretRef>,
    /// TLS settings (server CA, client certificate for mTLS).
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// Extra fixed headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Settings of the `dvcqg` connector (the national public service portal).
    #[serde(default)]
    pub dvcqg: Option<DvcqgSection>,
    /// Settings of the `axis` connector (the national document exchange axis, edXML).
    #[serde(default)]
    pub axis: Option<AxisSection>,
    /// Signing profile (a `[signing.NAME]` table) applied to every request. Default: unsigned.
    #[serde(default)]
    pub signing: Option<String>,
    /// The party's call quota, e.g. `{ per_sec = 20.0, burst = 5 }`: every call of this adapter
    /// (deliveries, batches, logins, look-ups) waits for a slot, so a backlog drains at the
    /// quota instead of into 429s. Default: no limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSection>,
}

/// An adapter's outbound call quota (`crate::transport::ratelimit`).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct RateLimitSection {
    /// Calls per second, > 0.
    pub per_sec: f64,
    /// Calls that may go back to back after a quiet time, ≥ 1. Default 1.
    #[serde(default = "d_rate_burst")]
    pub burst: u32,
}

fn d_rate_burst() -> u32 {
    defaults::RATE_LIMIT_BURST
}

/// The national public service portal (DVCQG). `url` of the adapter is the integration
/// endpoint (sync operations); `sharing_url` the sharing endpoint (catalogue, look-ups).
#[derive(Debug, Clone, Deserialize)]
pub struct DvcqgSection {
    /// Sharing endpoint (catalogue, `TraCuuHoSo`). Default: the integration `url`.
    #[serde(default)]
    pub sharing_url: Option<String>,
    /// The unit's code, sent as `madonvi` and the `dstcode` header, e.g. `000.00.01.H22`.
    pub unit_code: String,
    /// `session` (login with username/password, session in every body) or `oauth2` (client
    /// credentials at the provincial integration platform, bearer token). Default `session`.
    #[serde(default = "d_dvcqg_auth")]
    pub auth: String,
    /// Session login: user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Session login: password, by reference.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// Session login: URL of the login call. Default: the integration `url`.
    #[serde(default)]
    pub login_url: Option<String>,
    /// Session login: the `service` value of the login body. Default `DangNhap`.
    #[serde(default = "d_dvcqg_login_service")]
    pub login_service: String,
    /// OAuth2: token endpoint (`POST {token_url}` with `grant_type=client_credentials`).
    #[serde(default)]
    pub token_url: Option<String>,
    /// OAuth2: client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// OAuth2: client secret, by reference.
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// Table of local procedure codes → national codes (`MaTTHC`), a TOML file
    /// `[codes] "LOCAL" = "1.001234"`. A code already national (`d.dddddd`) passes as is.
    #[serde(default)]
    pub procedures: Option<PathBuf>,
    /// How `isUpdating` is decided: `ledger` (true when the gateway delivered a version of the
    /// dossier before) or `lookup` (ask the portal with `TraCuuHoSo` when the ledger does not
    /// know it). Default `ledger`.
    #[serde(default = "d_dvcqg_is_updating")]
    pub is_updating: String,
    /// `error_code` values that mean the session expired (renewed once, transparently).
    #[serde(default = "d_dvcqg_expired_codes")]
    pub session_expired_codes: Vec<String>,
    /// `error_code` values worth retrying (the portal's transient faults). Every other
    /// non-zero code is a refusal of the content: dead-lettered with the portal's message.
    #[serde(default = "d_dvcqg_retryable_codes")]
    pub retryable_codes: Vec<String>,
    /// `error_code` values meaning "this dossier already exists" (answered to isUpdating=false):
    /// the call is repeated once with isUpdating=true.
    #[serde(default = "d_dvcqg_exists_codes")]
    pub exists_codes: Vec<String>,
    /// `error_code` values meaning "no such dossier" (answered to isUpdating=true): repeated
    /// once with isUpdating=false.
    #[serde(default = "d_dvcqg_not_found_codes")]
    pub not_found_codes: Vec<String>,
    /// Most dossiers in one `data` array. Default 20.
    #[serde(default = "d_dvcqg_batch_items")]
    pub batch_max_items: usize,
    /// Most bytes of one batch body. Default 256 KiB.
    #[serde(default = "d_dvcqg_batch_bytes")]
    pub batch_max_bytes: usize,
    /// How long a batch that is not full waits for companions. Default 0: a batch goes as soon
    /// as a call slot is free, and what arrives while the calls are in flight forms the next
    /// one (batches grow with load without adding latency when the portal is idle).
    #[serde(default = "d_dvcqg_linger")]
    pub batch_linger: Dur,
    /// Batch calls of one operation in flight at once. Default 4. (One dossier is never in two
    /// at once: a route lane waits for a dossier's delivery before its next message.)
    #[serde(default = "d_dvcqg_in_flight")]
    pub batch_in_flight: usize,
}

/// The national document exchange axis (edXML, CONTRACTS.md §5). `url` of the adapter is the
/// axis's base URL; each operation is a POST to `url` + its path. The wire (paths, header
/// names) is [open]: every name is a setting, defaulting to the sandbox's.
#[derive(Debug, Clone, Deserialize)]
pub struct AxisSection {
    /// required: the province's `systemId` at the axis.
    pub system_id: String,
    /// required: the system's secret, by reference.
    pub secret: SecretRef,
    /// required: the province's `OrganId`; an envelope sent must come `From` it.
    pub organ_id: String,
    /// Path of `sendEdoc`. Default `/sendEdoc`.
    #[serde(default = "d_axis_send")]
    pub send_path: String,
    /// Path of `getReceivedEdocList`. Default `/getReceivedEdocList`.
    #[serde(default = "d_axis_list")]
    pub list_path: String,
    /// Path of `getEdoc`. Default `/getEdoc`.
    #[serde(default = "d_axis_get")]
    pub get_path: String,
    /// Path of `updateStatus`. Default `/updateStatus`.
    #[serde(default = "d_axis_status")]
    pub status_path: String,
    /// HTTP header carrying the system id. Default `systemId`.
    #[serde(default = "d_axis_system_header")]
    pub system_header: String,
    /// HTTP header carrying the secret. Default `secret`.
    #[serde(default = "d_axis_secret_header")]
    pub secret_header: String,
    /// HTTP header carrying the operation's JSON header. Default `edoc-header`.
    #[serde(default = "d_axis_json_header")]
    pub json_header: String,
    /// `errorCode` values worth retrying; every other `FAIL` is a refusal of the content,
    /// dead-lettered with the axis's description. Default none.
    #[serde(default)]
    pub retryable_codes: Vec<String>,
    /// How often the axis is polled for documents and statuses addressed to the province;
    /// `0s` = never (the `document.*` events come only from the one-stop system). Default 1m.
    #[serde(default = "d_axis_poll")]
    pub poll_interval: Dur,
    /// The source name of the events the poll publishes (a route's `from`). Default `axis`.
    #[serde(default = "d_axis_source")]
    pub source_name: String,
    /// The `[signing.NAME]` profile whose `trust_anchors` (and CRLs) verify received
    /// envelopes. Default: the adapter's `signing` profile.
    #[serde(default)]
    pub trust: Option<String>,
    /// Items asked for per list call. Default 50.
    #[serde(default = "d_axis_page_size")]
    pub page_size: u32,
}

fn d_axis_send() -> String {
    defaults::AXIS_SEND_PATH.into()
}
fn d_axis_list() -> String {
    defaults::AXIS_LIST_PATH.into()
}
fn d_axis_get() -> String {
    defaults::AXIS_GET_PATH.into()
}
fn d_axis_status() -> String {
    defaults::AXIS_STATUS_PATH.into()
}
fn d_axis_system_header() -> String {
    defaults::AXIS_SYSTEM_HEADER.into()
}
fn d_axis_secret_header() -> String {
    defaults::AXIS_SECRET_HEADER.into()
}
fn d_axis_json_header() -> String {
    defaults::AXIS_JSON_HEADER.into()
}
fn d_axis_poll() -> Dur {
    Dur(defaults::AXIS_POLL_INTERVAL)
}
fn d_axis_source() -> String {
    defaults::AXIS_SOURCE.into()
}
fn d_axis_page_size() -> u32 {
    defaults::AXIS_PAGE_SIZE
}

#[derive(Debug, Clone, Deserialize)]
pub struct TlsSection {
    /// PEM file of the CA(s) that issue the party's server certificate.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain for mTLS.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM client private key for mTLS, by reference (it is a secret).
    #[serde(default)]
    pub client_key: Option<SecretRef>,
}

fn d_http_timeout() -> Dur {
    Dur(defaults::HTTP_TIMEOUT)
}
fn d_http_connect_timeout() -> Dur {
    Dur(defaults::HTTP_CONNECT_TIMEOUT)
}
fn d_dvcqg_auth() -> String {
    "session".into()
}
fn d_dvcqg_login_service() -> String {
    defaults::DVCQG_LOGIN_SERVICE.into()
}
fn d_dvcqg_is_updating() -> String {
    "ledger".into()
}
fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
fn d_dvcqg_expired_codes() -> Vec<String> {
    strings(defaults::DVCQG_SESSION_EXPIRED_CODES)
}
fn d_dvcqg_retryable_codes() -> Vec<String> {
    strings(defaults::DVCQG_RETRYABLE_CODES)
}
fn d_dvcqg_exists_codes() -> Vec<String> {
    strings(defaults::DVCQG_EXISTS_CODES)
}
fn d_dvcqg_not_found_codes() -> Vec<String> {
    strings(defaults::DVCQG_NOT_FOUND_CODES)
}
fn d_dvcqg_batch_items() -> usize {
    defaults::DVCQG_BATCH_ITEMS
}
fn d_dvcqg_batch_bytes() -> usize {
    defaults::DVCQG_BATCH_BYTES
}
fn d_dvcqg_in_flight() -> usize {
    defaults::DVCQG_BATCH_IN_FLIGHT
}
fn d_dvcqg_linger() -> Dur {
    Dur(defaults::DVCQG_BATCH_LINGER)
}

/// Check `[adapters]`: names, connector, URL, quota, TLS pairs, DVCQG settings.
pub(super) fn validate(
    adapters: &BTreeMap<String, AdapterSection>,
    p: &mut impl FnMut(String, String, &str),
) {
    for (name, a) in adapters {
        if !valid_name(name) {
            p(
                format!("adapters.{name}"),
                "the name has characters other than a-z, 0-9, - and _".into(),
                "rename it",
            );
        }
        match a.connector.as_str() {
            "dvcqg" => validate_dvcqg(name, a.dvcqg.as_ref(), p),
            "axis" => validate_axis(name, a.axis.as_ref(), p),
            kind if CONNECTORS.contains(&kind) => {}
            other => p(
                format!("adapters.{name}.connector"),
                format!("unknown connector `{other}`"),
                &format!("use one of: {}", CONNECTORS.join(", ")),
            ),
        }
        if !(a.url.starts_with("http://") || a.url.starts_with("https://")) {
            p(
                format!("adapters.{name}.url"),
                format!("`{}` is not an http(s) URL", a.url),
                "write https://host/path",
            );
        }
        if let Some(r) = &a.rate_limit {
            if !(r.per_sec.is_finite() && r.per_sec > 0.0) {
                p(
                    format!("adapters.{name}.rate_limit.per_sec"),
                    format!("{} is not a positive number of calls a second", r.per_sec),
                    "write e.g. per_sec = 20.0, or remove rate_limit for no limit",
                );
            }
            if r.burst == 0 {
                p(
                    format!("adapters.{name}.rate_limit.burst"),
                    "0 would let no call through".into(),
                    "write burst = 1 or more",
                );
            }
        }
        if let Some(tls) = &a.tls {
            if tls.client_cert.is_some() != tls.client_key.is_some() {
                p(
                    format!("adapters.{name}.tls"),
                    "client_cert and client_key go together".into(),
                    "set both for mTLS, or neither",
                );
            }
        }
    }
}

fn validate_dvcqg(name: &str, d: Option<&DvcqgSection>, p: &mut impl FnMut(String, String, &str)) {
    let at = format!("adapters.{name}.dvcqg");
    let Some(d) = d else {
        p(
            at,
            "the dvcqg connector needs its settings".into(),
            "add an [adapters.NAME.dvcqg] table with unit_code and auth",
        );
        return;
    };
    match d.auth.as_str() {
        "session" => {
            if d.username.is_none() || d.password.is_none() {
                p(
                    format!("{at}.username"),
                    "session auth needs username and password".into(),
                    "set username and password = { env = \"NAME\" }",
                );
            }
        }
        "oauth2" => {
            if d.token_url.is_none() || d.client_id.is_none() || d.client_secret.is_none() {
                p(
                    format!("{at}.token_url"),
                    "oauth2 auth needs token_url, client_id and client_secret".into(),
                    "set all three (client_secret by reference)",
                );
            }
        }
        other => p(
            format!("{at}.auth"),
            format!("unknown auth `{other}`"),
            "use session or oauth2",
        ),
    }
    validate_dvcqg_modes(&at, d, p);
}

/// The DVCQG settings beyond authentication: update mode, unit code, batch sizes.
fn validate_dvcqg_modes(at: &str, d: &DvcqgSection, p: &mut impl FnMut(String, String, &str)) {
    if !matches!(d.is_updating.as_str(), "ledger" | "lookup") {
        p(
            format!("{at}.is_updating"),
            format!("unknown mode `{}`", d.is_updating),
            "use ledger or lookup",
        );
    }
    if d.unit_code.trim().is_empty() {
        p(
            format!("{at}.unit_code"),
            "must not be empty".into(),
            "set the unit's code, like 000.00.01.H22",
        );
    }
    if d.batch_in_flight == 0 {
        p(
            format!("{at}.batch_in_flight"),
            "0 would send nothing".into(),
            "write batch_in_flight = 1 or more",
        );
    }
    if d.batch_max_items == 0 || d.batch_max_bytes < 1024 {
        p(
            format!("{at}.batch_max_items"),
            "batches must hold at least 1 item and 1 KiB".into(),
            "raise batch_max_items / batch_max_bytes",
        );
    }
}

fn validate_axis(name: &str, x: Option<&AxisSection>, p: &mut impl FnMut(String, String, &str)) {
    let at = format!("adapters.{name}.axis");
    let Some(x) = x else {
        p(
            at,
            "the axis connector needs its settings".into(),
            "add an [adapters.NAME.axis] table with system_id, secret and organ_id",
        );
        return;
    };
    for (key, v) in [
        ("system_id", &x.system_id),
        ("organ_id", &x.organ_id),
        ("system_header", &x.system_header),
        ("secret_header", &x.secret_header),
        ("json_header", &x.json_header),
    ] {
        if v.trim().is_empty() {
            p(format!("{at}.{key}"), "must not be empty".into(), "set it");
        }
    }
    for (key, v) in [
        ("send_path", &x.send_path),
        ("list_path", &x.list_path),
        ("get_path", &x.get_path),
        ("status_path", &x.status_path),
    ] {
        if !v.starts_with('/') {
            p(
                format!("{at}.{key}"),
                format!("`{v}` is not a path"),
                "write a path after the adapter's url, like /sendEdoc",
            );
        }
    }
    if !valid_name(&x.source_name) {
        p(
            format!("{at}.source_name"),
            "the name has characters other than a-z, 0-9, - and _".into(),
            "rename it",
        );
    }
    if x.page_size == 0 {
        p(
            format!("{at}.page_size"),
            "0 would list nothing".into(),
            "write page_size = 1 or more",
        );
    }
}
