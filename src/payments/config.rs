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

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::orders::Settings;
use super::platform::{Platform, PlatformSettings};
use super::service::Payments;
use super::vnpay::{VnPay, VnPaySettings};
use crate::transport::stack::BuildError;

// The section types and their validation live with the rest of the configuration.
pub use crate::config::payments::{
    validate, MoMoSection, PayGovSection, PaymentsSection, PlatformSection, VnPaySection, IP_ADDR,
    PROVIDER_TIMEOUT, RECONCILE_INTERVAL, VNPAY_API_URL, VNPAY_PAY_URL,
};

/// Why the payment service cannot be built from `[payments]`, by step.
#[derive(Debug, thiserror::Error)]
pub enum BuildFailure {
    #[error("{0}")]
    Store(#[from] gw_store::StoreError),
    /// A secret (`hash_secret`, `client_secret`, …) cannot be resolved.
    #[error("{at}: {detail}")]
    Secret { at: String, detail: String },
    #[error("{0} is unknown")]
    Unknown(String),
    /// A provider's HTTP client cannot be built.
    #[error(transparent)]
    Client(#[from] BuildError),
}

/// The CLI and the wiring still print this as text.
impl From<BuildFailure> for String {
    fn from(e: BuildFailure) -> String {
        e.to_string()
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
    store_tls: Option<gw_store::PgTls>,
    evidence: Option<Arc<dyn super::hooks::EvidenceHook>>,
) -> Result<Built, BuildFailure> {
    let secret_at = |at: String| {
        move |detail: crate::config::SecretProblem| BuildFailure::Secret {
            at,
            detail: detail.to_string(),
        }
    };
    let store = gw_store::payments::open_tls(store_url, store_tls).await?;
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
            .map_err(secret_at(format!("payments.vnpay.{name}.hash_secret")))?;
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
            .map_err(secret_at(format!("payments.platform.{name}.hash_key")))?;
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
            .map_err(secret_at(format!("{at}.secret_key")))?;
        let client_secret = v
            .client_secret
            .resolve(base)
            .map_err(secret_at(format!("{at}.client_secret")))?;
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
                .ok_or_else(|| {
                BuildFailure::Unknown(format!("{at}.callback_algorithm"))
            })?,
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
            .map_err(secret_at(format!("payments.momo.{name}.secret_key")))?;
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
        assert_eq!(p.grouping, crate::payments::Grouping::PerFee);
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
