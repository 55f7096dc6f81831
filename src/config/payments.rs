//! `[payments]`: online fee payment (see `gateway.example.toml` for a commented example).
//!
//! ```toml
//! [payments]
//! grouping = "per_fee"              # or "per_dossier"
//! deadline = "30m"                  # a requested order older than this is queried / expired
//! reconcile_interval = "10m"        # the scheduled reconciliation; "0s" = only the command
//! token = { env = "GW_PAYMENTS_TOKEN" }   # the one-stop system's bearer token (optional)
//!
//! [payments.vnpay.vnpay]            # a VNPay provider named `vnpay`
//! tmn_code = "ABCD1234"
//! hash_secret = { env = "GW_VNPAY_SECRET" }
//! return_url = "https://motcua.example/payment/return"
//! ```

//!
//! The section types, their defaults and their validation live here, with the configuration;
//! `crate::payments` re-exports them and builds the service from them
//! (`crate::payments::config::build`). That `source_name` is the section's own (no `[sources]`
//! name, no job's) is checked with the other cross-section checks, in `references.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::Dur;
use super::secrets::SecretRef;

/// Default VNPay pay page (the sandbox of VNPay; production is `https://pay.vnpay.vn/vpcpay.html`).
pub const VNPAY_PAY_URL: &str = "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html";
/// Default VNPay transaction API.
pub const VNPAY_API_URL: &str = "https://sandbox.vnpayment.vn/merchant_webapi/api/transaction";
/// Default reconciliation interval.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(600);
/// Default timeout of a provider call.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `vnp_IpAddr`.
pub const IP_ADDR: &str = "127.0.0.1";

/// Default order deadline: 30 minutes (VNPay's pay page expires after 15).
pub const DEFAULT_DEADLINE_SECS: u64 = 1800;
/// Default reference prefix.
pub const DEFAULT_REFERENCE_PREFIX: &str = "GW";
/// Default source name of `payment.settled` envelopes.
pub const DEFAULT_SOURCE_NAME: &str = "payments";
/// Default largest fee and order amount: 100 billion VND. Far above any administrative fee,
/// and far below where `amount × 100` (VNPay's unit) or a sum of fees could overflow.
pub const DEFAULT_MAX_AMOUNT: i64 = 100_000_000_000;
/// The highest `max_fee_amount` / `max_order_amount` a configuration may set (10^15 VND).
pub const MAX_AMOUNT_LIMIT: i64 = 1_000_000_000_000_000;
/// MoMo's test environment (production: `https://payment.momo.vn/v2/gateway/api/create`).
pub const MOMO_CREATE_URL: &str = "https://test-payment.momo.vn/v2/gateway/api/create";
/// MoMo's test environment query endpoint.
pub const MOMO_QUERY_URL: &str = "https://test-payment.momo.vn/v2/gateway/api/query";
/// Default MoMo `requestType`: pay with the MoMo wallet.
pub const MOMO_REQUEST_TYPE: &str = "captureWallet";

/// How fees become orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    /// One order per fee item (the default: a fee can be paid, or refunded, on its own).
    #[default]
    PerFee,
    /// One order for all of a dossier's fees.
    PerDossier,
}

/// How an order request's fees are checked (`payments.fee_check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeeCheck {
    /// Every requested fee must be one the dossier's newest snapshot states, with the same
    /// amount and not paid; a dossier without a known snapshot is refused (409).
    #[default]
    Known,
    /// No check against the dossier (only the limits). For a one-stop system that never
    /// sends dossier snapshots through this gateway; `check-config` warns.
    Off,
}

/// `[payments]`.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentsSection {
    /// `per_fee` (one order per fee item) or `per_dossier` (one order for all of a dossier's
    /// fees). Default `per_fee`.
    #[serde(default)]
    pub grouping: Grouping,
    /// A `requested` order older than this is queried at the provider by reconciliation and
    /// expired when the provider never saw it. Default 30m.
    #[serde(default = "d_deadline")]
    pub deadline: Dur,
    /// How often the scheduled reconciliation runs; `0s` = only `gateway payments reconcile`.
    /// Default 10m.
    #[serde(default = "d_interval")]
    pub reconcile_interval: Dur,
    /// Order reference prefix: up to 4 letters or digits. Default `GW`.
    #[serde(default = "d_prefix")]
    pub reference_prefix: String,
    /// Source name of the `payment.settled` envelopes (a route's `from`). Default `payments`.
    #[serde(default = "d_source")]
    pub source_name: String,
    /// The largest amount (VND) of one fee; larger ones are refused with 400. Default 100
    /// billion.
    #[serde(default = "d_max_amount")]
    pub max_fee_amount: i64,
    /// The largest amount (VND) of one order (with `per_dossier`, the sum of the fees).
    /// Default 100 billion.
    #[serde(default = "d_max_amount")]
    pub max_order_amount: i64,
    /// How an order's fees are checked: `known` (default: each fee must be one the
    /// dossier's newest snapshot states, same amount, not paid; a dossier the gateway has no
    /// snapshot of is refused with 409) or `off` (only the limits; check-config warns).
    #[serde(default)]
    pub fee_check: FeeCheck,
    /// Bearer token the one-stop system presents on `POST /payments/NAME/orders`. Required
    /// unless the inbound listener is loopback.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// VNPay providers by name.
    #[serde(default)]
    pub vnpay: BTreeMap<String, VnPaySection>,
    /// DVCQG payment platform providers by name.
    #[serde(default)]
    pub platform: BTreeMap<String, PlatformSection>,
    /// PayGov providers (through the LGSP) by name.
    #[serde(default)]
    pub paygov: BTreeMap<String, PayGovSection>,
    /// MoMo providers by name.
    #[serde(default)]
    pub momo: BTreeMap<String, MoMoSection>,
}

/// `[payments.momo.NAME]`: MoMo (IPN: `POST /payments/NAME/ipn`).
#[derive(Debug, Clone, Deserialize)]
pub struct MoMoSection {
    /// required: `partnerCode`.
    pub partner_code: String,
    /// required: `accessKey`.
    pub access_key: String,
    /// required: `secretKey` (signs every message), by reference.
    pub secret_key: SecretRef,
    /// required: where MoMo sends the citizen back.
    pub redirect_url: String,
    /// required: where MoMo posts IPNs, i.e. this gateway's `…/payments/NAME/ipn` as MoMo
    /// reaches it.
    pub ipn_url: String,
    /// The creation endpoint. Default MoMo's test environment ([`MOMO_CREATE_URL`]).
    #[serde(default = "d_momo_create")]
    pub create_url: String,
    /// The query endpoint. Default MoMo's test environment ([`MOMO_QUERY_URL`]).
    #[serde(default = "d_momo_query")]
    pub query_url: String,
    /// `requestType`. Default `captureWallet`.
    #[serde(default = "d_momo_type")]
    pub request_type: String,
    /// `lang`: `vi` or `en`. Default `vi`.
    #[serde(default = "d_momo_lang")]
    pub lang: String,
    /// Default 30s.
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
}

fn d_momo_create() -> String {
    MOMO_CREATE_URL.into()
}
fn d_momo_query() -> String {
    MOMO_QUERY_URL.into()
}
fn d_momo_type() -> String {
    MOMO_REQUEST_TYPE.into()
}
fn d_momo_lang() -> String {
    "vi".into()
}

/// `[payments.paygov.NAME]`: PayGov through the provincial integration platform (callback:
/// `POST /payments/NAME/callback`).
#[derive(Debug, Clone, Deserialize)]
pub struct PayGovSection {
    /// required: `partnerCode`.
    pub partner_code: String,
    /// required: `accessKey`.
    pub access_key: String,
    /// required: `secretKey`, by reference.
    pub secret_key: SecretRef,
    /// required: `serviceCode`.
    pub service_code: String,
    /// required: the creation endpoint (on the LGSP).
    pub create_url: String,
    /// required: the query endpoint (on the LGSP).
    pub query_url: String,
    /// required: the LGSP's OAuth2 token endpoint (client credentials).
    pub token_url: String,
    /// required: the LGSP client id.
    pub client_id: String,
    /// required: the LGSP client secret, by reference.
    pub client_secret: SecretRef,
    /// required: where PayGov sends the citizen back.
    pub return_url: String,
    /// `ipAddress`. Default `127.0.0.1`.
    #[serde(default = "d_ip")]
    pub ip_addr: String,
    /// Default 30s.
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
    /// The callback checksum ([open]): `sha256`, `hmac-sha256` or `hmac-sha512`. Default
    /// `sha256`.
    #[serde(default = "d_cb_algo")]
    pub callback_algorithm: String,
    /// The callback fields hashed, in order (`secretKey`, `accessKey`, `partnerCode` are ours).
    /// Default every meaningful field ([`gw_crypto::checksum::PAYGOV_CALLBACK_FIELDS`]); must
    /// cover orderId, amount and errorCode, and may not be the creation formula.
    #[serde(default = "d_cb_fields")]
    pub callback_fields: Vec<String>,
    /// Joins the callback fields. Default "" (concatenated).
    #[serde(default)]
    pub callback_separator: String,
}

fn d_cb_algo() -> String {
    "sha256".into()
}
fn d_cb_fields() -> Vec<String> {
    gw_crypto::checksum::PAYGOV_CALLBACK_FIELDS
        .map(String::from)
        .to_vec()
}

/// `[payments.platform.NAME]`: the DVCQG payment platform (callback:
/// `POST /payments/NAME/callback`).
#[derive(Debug, Clone, Deserialize)]
pub struct PlatformSection {
    /// required: `MaDoiTac`, our partner code.
    pub partner_code: String,
    /// required: the shared hash key of `MaXacThuc`, by reference.
    pub hash_key: SecretRef,
    /// required: the initiation endpoint.
    pub init_url: String,
    /// required: the transaction query endpoint.
    pub query_url: String,
    /// `MaKenhThanhToan` the platform assigned. Default "".
    #[serde(default)]
    pub channel: String,
    /// `LoaiHinhThanhToan`. Default "".
    #[serde(default)]
    pub payment_type: String,
    /// `MaThietBi`. Default "".
    #[serde(default)]
    pub device: String,
    /// `Ip` sent with initiations. Default `127.0.0.1`.
    #[serde(default = "d_ip")]
    pub ip_addr: String,
    /// Timeout of a call to the platform. Default 30s.
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
}

/// `[payments.vnpay.NAME]`.
#[derive(Debug, Clone, Deserialize)]
pub struct VnPaySection {
    /// required: `vnp_TmnCode`, the merchant code VNPay issued.
    pub tmn_code: String,
    /// required: the hash secret (`vnp_HashSecret`), by reference.
    pub hash_secret: SecretRef,
    /// required: where VNPay sends the citizen back after paying.
    pub return_url: String,
    /// The pay page. Default VNPay's sandbox ([`VNPAY_PAY_URL`]).
    #[serde(default = "d_vnpay_pay")]
    pub pay_url: String,
    /// The transaction API (`querydr`). Default VNPay's sandbox ([`VNPAY_API_URL`]).
    #[serde(default = "d_vnpay_api")]
    pub api_url: String,
    /// `vnp_IpAddr` sent with orders and queries. Default `127.0.0.1`.
    #[serde(default = "d_ip")]
    pub ip_addr: String,
    /// Timeout of a call to VNPay. Default 30s.
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
}

fn d_deadline() -> Dur {
    Dur(Duration::from_secs(DEFAULT_DEADLINE_SECS))
}
fn d_interval() -> Dur {
    Dur(RECONCILE_INTERVAL)
}
fn d_prefix() -> String {
    DEFAULT_REFERENCE_PREFIX.into()
}
fn d_max_amount() -> i64 {
    DEFAULT_MAX_AMOUNT
}
fn d_source() -> String {
    DEFAULT_SOURCE_NAME.into()
}
fn d_vnpay_pay() -> String {
    VNPAY_PAY_URL.into()
}
fn d_vnpay_api() -> String {
    VNPAY_API_URL.into()
}
fn d_ip() -> String {
    IP_ADDR.into()
}
fn d_timeout() -> Dur {
    Dur(PROVIDER_TIMEOUT)
}

/// Check `[payments]`; each problem is reported through `p(key, what, fix)`. In steps: the
/// section's own limits, then each provider kind (provider names are unique across kinds),
/// then that there is a provider at all.
pub fn validate(s: &PaymentsSection, p: &mut impl FnMut(String, String, &str)) {
    validate_limits(s, p);
    let mut names = BTreeSet::new();
    validate_vnpay(s, &mut names, p);
    validate_platform(s, &mut names, p);
    validate_paygov(s, &mut names, p);
    validate_momo(s, &mut names, p);
    if names.is_empty() {
        p(
            "payments".into(),
            "no provider is configured".into(),
            "add a [payments.vnpay.NAME], [payments.platform.NAME], [payments.paygov.NAME] or \
             [payments.momo.NAME] table",
        );
    }
}

/// Reference prefix, source name, amount limits, deadline.
fn validate_limits(s: &PaymentsSection, p: &mut impl FnMut(String, String, &str)) {
    if s.reference_prefix.len() > 4
        || !s
            .reference_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric())
    {
        p(
            "payments.reference_prefix".into(),
            format!("`{}` is not 0 to 4 letters or digits", s.reference_prefix),
            "use e.g. \"GW\"",
        );
    }
    if s.source_name.trim().is_empty() {
        p(
            "payments.source_name".into(),
            "is empty".into(),
            "name the source of payment.settled, e.g. \"payments\"",
        );
    }
    for (at, v) in [
        ("payments.max_fee_amount", s.max_fee_amount),
        ("payments.max_order_amount", s.max_order_amount),
    ] {
        // ×100 (VNPay's unit) must stay far from i64::MAX.
        if !(1..=MAX_AMOUNT_LIMIT).contains(&v) {
            p(
                at.into(),
                format!("{v} is not between 1 and {}", MAX_AMOUNT_LIMIT),
                "set the largest fee / order the province takes, in VND",
            );
        }
    }
    if s.max_fee_amount > s.max_order_amount {
        p(
            "payments.max_fee_amount".into(),
            "is above payments.max_order_amount".into(),
            "an order holds at least one fee: raise max_order_amount or lower max_fee_amount",
        );
    }
    if s.deadline.0.is_zero() {
        p(
            "payments.deadline".into(),
            "is zero".into(),
            "give citizens time to pay, e.g. \"30m\"",
        );
    }
}

/// A provider's name is taken once across every provider kind.
fn unique_name(
    names: &mut BTreeSet<String>,
    name: &str,
    at: &str,
    p: &mut impl FnMut(String, String, &str),
) {
    if !names.insert(name.to_string()) {
        p(
            at.to_string(),
            "a provider of this name already exists".into(),
            "give each provider its own name",
        );
    }
}

/// Every `(key, url)` is an http(s) URL.
fn check_urls(at: &str, urls: &[(&str, &String)], p: &mut impl FnMut(String, String, &str)) {
    for (k, url) in urls {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            p(
                format!("{at}.{k}"),
                format!("`{url}` is not an http(s) URL"),
                "write the full URL",
            );
        }
    }
}

fn validate_vnpay(
    s: &PaymentsSection,
    names: &mut BTreeSet<String>,
    p: &mut impl FnMut(String, String, &str),
) {
    for (name, v) in &s.vnpay {
        let at = format!("payments.vnpay.{name}");
        unique_name(names, name, &at, p);
        if v.tmn_code.trim().is_empty() {
            p(
                format!("{at}.tmn_code"),
                "is empty".into(),
                "the merchant code VNPay issued",
            );
        }
        check_urls(
            &at,
            &[
                ("return_url", &v.return_url),
                ("pay_url", &v.pay_url),
                ("api_url", &v.api_url),
            ],
            p,
        );
    }
}

fn validate_platform(
    s: &PaymentsSection,
    names: &mut BTreeSet<String>,
    p: &mut impl FnMut(String, String, &str),
) {
    for (name, v) in &s.platform {
        let at = format!("payments.platform.{name}");
        unique_name(names, name, &at, p);
        if v.partner_code.trim().is_empty() {
            p(
                format!("{at}.partner_code"),
                "is empty".into(),
                "the MaDoiTac the platform issued",
            );
        }
        check_urls(
            &at,
            &[("init_url", &v.init_url), ("query_url", &v.query_url)],
            p,
        );
    }
}

fn validate_paygov(
    s: &PaymentsSection,
    names: &mut BTreeSet<String>,
    p: &mut impl FnMut(String, String, &str),
) {
    for (name, v) in &s.paygov {
        let at = format!("payments.paygov.{name}");
        unique_name(names, name, &at, p);
        if gw_crypto::checksum::FieldAlgorithm::parse(&v.callback_algorithm).is_none() {
            p(
                format!("{at}.callback_algorithm"),
                format!("`{}` is unknown", v.callback_algorithm),
                "use sha256, hmac-sha256 or hmac-sha512",
            );
        }
        validate_paygov_callback_fields(&at, v, p);
        check_urls(
            &at,
            &[
                ("create_url", &v.create_url),
                ("query_url", &v.query_url),
                ("token_url", &v.token_url),
                ("return_url", &v.return_url),
            ],
            p,
        );
    }
}

/// The fields PayGov's callback checksum covers: not empty, covering the order, amount and
/// result, and not the creation checksum's formula.
fn validate_paygov_callback_fields(
    at: &str,
    v: &PayGovSection,
    p: &mut impl FnMut(String, String, &str),
) {
    if v.callback_fields.is_empty() {
        p(
            format!("{at}.callback_fields"),
            "is empty".into(),
            "list the fields PayGov's callback checksum covers",
        );
        return;
    }
    let missing: Vec<&str> = gw_crypto::checksum::PAYGOV_CALLBACK_REQUIRED
        .into_iter()
        .filter(|f| !v.callback_fields.iter().any(|c| c == f))
        .collect();
    if !missing.is_empty() {
        p(
            format!("{at}.callback_fields"),
            format!(
                "leaves out {}: a callback could be changed there and still verify",
                missing.join(", ")
            ),
            "cover the order, the amount and the result code",
        );
    }
    if v.callback_fields == gw_crypto::checksum::PAYGOV_FIELDS && v.callback_algorithm == "sha256" {
        p(
            format!("{at}.callback_fields"),
            "is the creation checksum's formula: whoever sees an order request could answer it as paid".into(),
            "use the default or PayGov's documented callback formula",
        );
    }
}

fn validate_momo(
    s: &PaymentsSection,
    names: &mut BTreeSet<String>,
    p: &mut impl FnMut(String, String, &str),
) {
    for (name, v) in &s.momo {
        let at = format!("payments.momo.{name}");
        unique_name(names, name, &at, p);
        for (k, val) in [
            ("partner_code", &v.partner_code),
            ("access_key", &v.access_key),
        ] {
            if val.trim().is_empty() {
                p(
                    format!("{at}.{k}"),
                    "is empty".into(),
                    "the value MoMo issued",
                );
            }
        }
        if !["vi", "en"].contains(&v.lang.as_str()) {
            p(
                format!("{at}.lang"),
                format!("`{}` is not vi or en", v.lang),
                "use \"vi\"",
            );
        }
        check_urls(
            &at,
            &[
                ("redirect_url", &v.redirect_url),
                ("ipn_url", &v.ipn_url),
                ("create_url", &v.create_url),
                ("query_url", &v.query_url),
            ],
            p,
        );
    }
}

/// Check `payments.token`: required unless the inbound listener is loopback (the driver
/// decides that from `[inbound]` and passes it in).
pub(super) fn validate_token(
    pay: &PaymentsSection,
    inbound_loopback: bool,
    p: &mut impl FnMut(String, String, &str),
) {
    if pay.token.is_none() && !inbound_loopback {
        p(
            "payments.token".into(),
            "no token on a non-loopback listener: anyone could create payment orders".into(),
            "set token = { env = \"NAME\" } (the one-stop system presents it)",
        );
    }
}
