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

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::platform::{Platform, PlatformSettings};
use super::vnpay::{VnPay, VnPaySettings};
use super::{Grouping, Payments, Settings};
use crate::config::{Dur, SecretRef};

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
    pub fee_check: super::FeeCheck,
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
    /// The creation endpoint. Default MoMo's test environment ([`super::momo::CREATE_URL`]).
    #[serde(default = "d_momo_create")]
    pub create_url: String,
    /// The query endpoint. Default MoMo's test environment ([`super::momo::QUERY_URL`]).
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
    super::momo::CREATE_URL.into()
}
fn d_momo_query() -> String {
    super::momo::QUERY_URL.into()
}
fn d_momo_type() -> String {
    super::momo::REQUEST_TYPE.into()
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
    super::paygov::DEFAULT_CALLBACK_FIELDS
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
    Dur(Duration::from_secs(super::DEFAULT_DEADLINE_SECS))
}
fn d_interval() -> Dur {
    Dur(RECONCILE_INTERVAL)
}
fn d_prefix() -> String {
    super::DEFAULT_REFERENCE_PREFIX.into()
}
fn d_max_amount() -> i64 {
    super::DEFAULT_MAX_AMOUNT
}
fn d_source() -> String {
    super::DEFAULT_SOURCE_NAME.into()
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

/// Check `[payments]`; each problem is reported through `p(key, what, fix)`.
pub fn validate(s: &PaymentsSection, p: &mut impl FnMut(String, String, &str)) {
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
        if !(1..=super::MAX_AMOUNT_LIMIT).contains(&v) {
            p(
                at.into(),
                format!("{v} is not between 1 and {}", super::MAX_AMOUNT_LIMIT),
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
    let mut names = BTreeSet::new();
    for (name, v) in &s.vnpay {
        names.insert(name.clone());
        let at = format!("payments.vnpay.{name}");
        if v.tmn_code.trim().is_empty() {
            p(
                format!("{at}.tmn_code"),
                "is empty".into(),
                "the merchant code VNPay issued",
            );
        }
        for (k, url) in [
            ("return_url", &v.return_url),
            ("pay_url", &v.pay_url),
            ("api_url", &v.api_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                p(
                    format!("{at}.{k}"),
                    format!("`{url}` is not an http(s) URL"),
                    "write the full URL",
                );
            }
        }
    }
    for (name, v) in &s.platform {
        let at = format!("payments.platform.{name}");
        if !names.insert(name.clone()) {
            p(
                at.clone(),
                "a provider of this name already exists".into(),
                "give each provider its own name",
            );
        }
        if v.partner_code.trim().is_empty() {
            p(
                format!("{at}.partner_code"),
                "is empty".into(),
                "the MaDoiTac the platform issued",
            );
        }
        for (k, url) in [("init_url", &v.init_url), ("query_url", &v.query_url)] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                p(
                    format!("{at}.{k}"),
                    format!("`{url}` is not an http(s) URL"),
                    "write the full URL",
                );
            }
        }
    }
    for (name, v) in &s.paygov {
        let at = format!("payments.paygov.{name}");
        if !names.insert(name.clone()) {
            p(
                at.clone(),
                "a provider of this name already exists".into(),
                "give each provider its own name",
            );
        }
        if gw_crypto::checksum::FieldAlgorithm::parse(&v.callback_algorithm).is_none() {
            p(
                format!("{at}.callback_algorithm"),
                format!("`{}` is unknown", v.callback_algorithm),
                "use sha256, hmac-sha256 or hmac-sha512",
            );
        }
        if v.callback_fields.is_empty() {
            p(
                format!("{at}.callback_fields"),
                "is empty".into(),
                "list the fields PayGov's callback checksum covers",
            );
        } else {
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
            if v.callback_fields == gw_crypto::checksum::PAYGOV_FIELDS
                && v.callback_algorithm == "sha256"
            {
                p(
                    format!("{at}.callback_fields"),
                    "is the creation checksum's formula: whoever sees an order request could answer it as paid".into(),
                    "use the default or PayGov's documented callback formula",
                );
            }
        }
        for (k, url) in [
            ("create_url", &v.create_url),
            ("query_url", &v.query_url),
            ("token_url", &v.token_url),
            ("return_url", &v.return_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                p(
                    format!("{at}.{k}"),
                    format!("`{url}` is not an http(s) URL"),
                    "write the full URL",
                );
            }
        }
    }
    for (name, v) in &s.momo {
        let at = format!("payments.momo.{name}");
        if !names.insert(name.clone()) {
            p(
                at.clone(),
                "a provider of this name already exists".into(),
                "give each provider its own name",
            );
        }
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
        for (k, url) in [
            ("redirect_url", &v.redirect_url),
            ("ipn_url", &v.ipn_url),
            ("create_url", &v.create_url),
            ("query_url", &v.query_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                p(
                    format!("{at}.{k}"),
                    format!("`{url}` is not an http(s) URL"),
                    "write the full URL",
                );
            }
        }
    }
    if names.is_empty() {
        p(
            "payments".into(),
            "no provider is configured".into(),
            "add a [payments.vnpay.NAME], [payments.platform.NAME], [payments.paygov.NAME] or \
             [payments.momo.NAME] table",
        );
    }
}

/// The service and the connectors `[payments]` describes.
pub struct Built {
    pub paygov: BTreeMap<String, Arc<super::paygov::PayGov>>,
    pub momo: BTreeMap<String, Arc<super::momo::MoMo>>,
    pub payments: Arc<Payments>,
    pub vnpay: BTreeMap<String, Arc<VnPay>>,
    pub platform: BTreeMap<String, Arc<Platform>>,
}

/// Build the payment service and its connectors from `[payments]`; every transition and
/// refused callback is handed to `evidence` (the evidence log, when there is one).
pub async fn build(
    s: &PaymentsSection,
    base: &Path,
    store_url: &str,
    evidence: Option<Arc<dyn super::EvidenceHook>>,
) -> Result<Built, String> {
    let store = gw_store::payments::open(store_url)
        .await
        .map_err(|e| e.to_string())?;
    let mut payments = Payments::new(
        store,
        Settings {
            grouping: s.grouping,
            deadline: s.deadline.0,
            reference_prefix: s.reference_prefix.clone(),
            source_name: s.source_name.clone(),
            max_fee_amount: s.max_fee_amount,
            max_order_amount: s.max_order_amount,
            fee_check: s.fee_check,
        },
    );
    if let Some(hook) = evidence {
        payments = payments.with_evidence(hook);
    }
    let mut vnpay = BTreeMap::new();
    for (name, v) in &s.vnpay {
        let secret = v
            .hash_secret
            .resolve(base)
            .map_err(|e| format!("payments.vnpay.{name}.hash_secret: {e}"))?;
        let c = Arc::new(VnPay::new(VnPaySettings {
            name: name.clone(),
            tmn_code: v.tmn_code.clone(),
            hash_secret: secret.expose().to_string(),
            pay_url: v.pay_url.clone(),
            api_url: v.api_url.clone(),
            return_url: v.return_url.clone(),
            ip_addr: v.ip_addr.clone(),
            timeout: v.timeout.0,
        })?);
        payments = payments.with_provider(c.clone());
        vnpay.insert(name.clone(), c);
    }
    let mut platform = BTreeMap::new();
    for (name, v) in &s.platform {
        let key = v
            .hash_key
            .resolve(base)
            .map_err(|e| format!("payments.platform.{name}.hash_key: {e}"))?;
        let c = Arc::new(Platform::new(PlatformSettings {
            name: name.clone(),
            partner_code: v.partner_code.clone(),
            hash_key: key.expose().to_string(),
            init_url: v.init_url.clone(),
            query_url: v.query_url.clone(),
            channel: v.channel.clone(),
            payment_type: v.payment_type.clone(),
            device: v.device.clone(),
            ip_addr: v.ip_addr.clone(),
            timeout: v.timeout.0,
        })?);
        payments = payments.with_provider(c.clone());
        platform.insert(name.clone(), c);
    }
    let mut paygov = BTreeMap::new();
    for (name, v) in &s.paygov {
        let at = format!("payments.paygov.{name}");
        let secret = v
            .secret_key
            .resolve(base)
            .map_err(|e| format!("{at}.secret_key: {e}"))?;
        let client_secret = v
            .client_secret
            .resolve(base)
            .map_err(|e| format!("{at}.client_secret: {e}"))?;
        let c = Arc::new(super::paygov::PayGov::new(super::paygov::PayGovSettings {
            name: name.clone(),
            partner_code: v.partner_code.clone(),
            access_key: v.access_key.clone(),
            secret_key: secret.expose().to_string(),
            service_code: v.service_code.clone(),
            create_url: v.create_url.clone(),
            query_url: v.query_url.clone(),
            token_url: v.token_url.clone(),
            client_id: v.client_id.clone(),
            client_secret: client_secret.expose().to_string(),
            return_url: v.return_url.clone(),
            ip_addr: v.ip_addr.clone(),
            timeout: v.timeout.0,
            callback_algorithm: gw_crypto::checksum::FieldAlgorithm::parse(&v.callback_algorithm)
                .ok_or_else(|| format!("{at}.callback_algorithm is unknown"))?,
            callback_fields: v.callback_fields.clone(),
            callback_separator: v.callback_separator.clone(),
        })?);
        payments = payments.with_provider(c.clone());
        paygov.insert(name.clone(), c);
    }
    let mut momo = BTreeMap::new();
    for (name, v) in &s.momo {
        let secret = v
            .secret_key
            .resolve(base)
            .map_err(|e| format!("payments.momo.{name}.secret_key: {e}"))?;
        let c = Arc::new(super::momo::MoMo::new(super::momo::MoMoSettings {
            name: name.clone(),
            partner_code: v.partner_code.clone(),
            access_key: v.access_key.clone(),
            secret_key: secret.expose().to_string(),
            create_url: v.create_url.clone(),
            query_url: v.query_url.clone(),
            redirect_url: v.redirect_url.clone(),
            ipn_url: v.ipn_url.clone(),
            request_type: v.request_type.clone(),
            lang: v.lang.clone(),
            timeout: v.timeout.0,
        })?);
        payments = payments.with_provider(c.clone());
        momo.insert(name.clone(), c);
    }
    Ok(Built {
        momo,
        paygov,
        payments: Arc::new(payments),
        vnpay,
        platform,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    fn problems(text: &str) -> String {
        match crate::config::parse(text, "t.toml", PathBuf::from(".")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const OK: &str = r#"
[payments]
[payments.vnpay.v]
tmn_code = "T"
hash_secret = { env = "X" }
return_url = "https://r"
"#;

    #[test]
    fn payments_section_defaults_and_problems() {
        let l = crate::config::parse(OK, "t.toml", PathBuf::from(".")).unwrap();
        let p = l.config.payments.unwrap();
        assert_eq!(p.grouping, super::Grouping::PerFee);
        assert_eq!(p.deadline.0.as_secs(), super::super::DEFAULT_DEADLINE_SECS);
        assert_eq!(p.reconcile_interval.0, super::RECONCILE_INTERVAL);
        assert_eq!(p.source_name, "payments");
        assert_eq!(p.vnpay["v"].pay_url, super::VNPAY_PAY_URL);

        let e = problems(&format!("{OK}bogus = 1\n"));
        assert!(e.contains("payments.vnpay.v.bogus"), "{e}");
        let e = problems("[payments]\nreference_prefix = \"TOOLONG\"\ndeadline = \"0s\"\n");
        assert!(e.contains("payments.reference_prefix"), "{e}");
        assert!(e.contains("payments.deadline"), "{e}");
        assert!(e.contains("no provider is configured"), "{e}");
        let e = problems(&format!(
            "{OK}[payments.paygov.v]\npartner_code = \"P\"\naccess_key = \"A\"\nsecret_key = {{ env = \"S\" }}\nservice_code = \"S\"\ncreate_url = \"x\"\nquery_url = \"https://q\"\ntoken_url = \"https://t\"\nclient_id = \"c\"\nclient_secret = {{ env = \"C\" }}\nreturn_url = \"https://r\"\ncallback_algorithm = \"md5\"\n"
        ));
        assert!(
            e.contains("payments.paygov.v: a provider of this name"),
            "{e}"
        );
        assert!(e.contains("payments.paygov.v.callback_algorithm"), "{e}");
        assert!(e.contains("payments.paygov.v.create_url"), "{e}");

        let momo = "[payments]\n[payments.momo.m]\npartner_code = \"P\"\naccess_key = \"A\"\nsecret_key = { env = \"S\" }\nredirect_url = \"https://r\"\nipn_url = \"https://gw/payments/m/ipn\"\n";
        let l = crate::config::parse(momo, "t.toml", PathBuf::from(".")).unwrap();
        let m = &l.config.payments.unwrap().momo["m"];
        assert_eq!(m.create_url, super::super::momo::CREATE_URL);
        assert_eq!(m.request_type, "captureWallet");
        assert_eq!(m.lang, "vi");
        let e = problems(&format!(
            "{OK}[payments.momo.v]\npartner_code = \"\"\naccess_key = \"A\"\nsecret_key = {{ env = \"S\" }}\nredirect_url = \"https://r\"\nipn_url = \"gw/ipn\"\nlang = \"fr\"\n"
        ));
        assert!(
            e.contains("payments.momo.v: a provider of this name"),
            "{e}"
        );
        assert!(e.contains("payments.momo.v.partner_code"), "{e}");
        assert!(e.contains("payments.momo.v.ipn_url"), "{e}");
        assert!(e.contains("payments.momo.v.lang"), "{e}");
    }

    /// A source whose name is payments.source_name could post `payment.settled` with its own
    /// token: refused (before, accepted).
    #[test]
    fn payment_source_name_may_not_be_an_inbound_source() {
        let sources = "[sources.payments]\ntoken = { env = \"T\" }\nkinds = [\"payment.*\"]\n";
        let e = problems(&format!("{OK}{sources}"));
        assert!(
            e.contains("payments.source_name: `payments` is also a [sources] name"),
            "{e}"
        );
        let renamed = OK.replacen("[payments]\n", "[payments]\nsource_name = \"onestop\"\n", 1);
        let e = problems(&format!(
            "{renamed}[sources.onestop]\ntoken = {{ env = \"T\" }}\nkinds = [\"dossier.*\"]\n"
        ));
        assert!(e.contains("`onestop` is also a [sources] name"), "{e}");
        assert!(
            !problems(OK).contains("payments.source_name"),
            "{}",
            problems(OK)
        );
    }

    /// A configured PayGov callback scheme must cover the order, the amount and the result,
    /// and may not be the creation formula.
    #[test]
    fn weak_paygov_callback_schemes_are_refused() {
        let pg = |extra: &str| {
            problems(&format!(
                "{OK}[payments.paygov.g]\npartner_code = \"P\"\naccess_key = \"A\"\nsecret_key = {{ env = \"S\" }}\nservice_code = \"S\"\ncreate_url = \"https://c\"\nquery_url = \"https://q\"\ntoken_url = \"https://t\"\nclient_id = \"c\"\nclient_secret = {{ env = \"C\" }}\nreturn_url = \"https://r\"\n{extra}"
            ))
        };
        assert_eq!(pg(""), "", "the default scheme is accepted");
        let e = pg("callback_fields = [\"secretKey\", \"orderId\", \"amount\"]\n");
        assert!(
            e.contains("payments.paygov.g.callback_fields: leaves out errorCode"),
            "{e}"
        );
        let e = pg("callback_fields = [\"secretKey\", \"accessKey\", \"partnerCode\", \"orderId\", \"requestCode\", \"amount\"]\n");
        assert!(e.contains("leaves out errorCode"), "{e}");
        assert!(e.contains("is the creation checksum's formula"), "{e}");
        let e = pg("callback_fields = [\"secretKey\", \"errorCode\"]\n");
        assert!(e.contains("leaves out orderId, amount"), "{e}");
    }

    #[test]
    fn amount_limits_are_bounded() {
        let l = crate::config::parse(OK, "t.toml", PathBuf::from(".")).unwrap();
        let p = l.config.payments.unwrap();
        assert_eq!(p.max_fee_amount, super::super::DEFAULT_MAX_AMOUNT);
        assert_eq!(p.max_order_amount, super::super::DEFAULT_MAX_AMOUNT);
        let with = |extra: &str| {
            problems(&OK.replacen("[payments]\n", &format!("[payments]\n{extra}"), 1))
        };
        let e = with("max_fee_amount = 0\nmax_order_amount = 100000000000000000\n");
        assert!(
            e.contains("payments.max_fee_amount: 0 is not between 1 and"),
            "{e}"
        );
        assert!(
            e.contains("payments.max_order_amount: 100000000000000000 is not"),
            "{e}"
        );
        let e = with("max_fee_amount = 2000\nmax_order_amount = 1000\n");
        assert!(
            e.contains("payments.max_fee_amount: is above payments.max_order_amount"),
            "{e}"
        );
        assert_eq!(with("max_fee_amount = 1000\nmax_order_amount = 5000\n"), "");
    }
}
