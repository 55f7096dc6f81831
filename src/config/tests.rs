use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn parse_str(s: &str) -> Result<Loaded, ConfigError> {
    parse(s, "test.toml", PathBuf::from("."))
}

#[test]
fn example_file_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.example.toml");
    let loaded = load(&path).unwrap_or_else(|e| panic!("example config must load:\n{e}"));
    assert!(
        !loaded.config.routes.is_empty(),
        "the example shows at least one route"
    );
    assert!(!loaded.config.adapters.is_empty());
}

#[test]
fn empty_file_is_the_embedded_defaults() {
    let l = parse_str("").unwrap();
    assert_eq!(l.config.broker.prefetch, defaults::PREFETCH);
    assert!(l.broker_url().unwrap().starts_with("sqlite:"));
    assert!(l.store_url().unwrap().starts_with("sqlite:"));
    assert_eq!(l.config.retry.max_elapsed.0, defaults::RETRY_MAX_ELAPSED);
}

#[test]
fn every_unknown_key_and_problem_is_reported() {
    let e = parse_str(
        r#"
[gateway]
instanse = "x"
[broker]
prefetch = 0
colour = "red"
[[routes]]
name = "r"
from = "nowhere"
to = "nobody"
"#,
    )
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("test.toml:gateway.instanse: unknown key"),
        "{text}"
    );
    assert!(
        text.contains("test.toml:broker.colour: unknown key"),
        "{text}"
    );
    assert!(
        text.contains("test.toml:broker.prefetch: must be at least 1"),
        "{text}"
    );
    assert!(
        text.contains("test.toml:routes[0].from: no source named `nowhere`"),
        "{text}"
    );
    assert!(
        text.contains("test.toml:routes[0].to: no adapter named `nobody`"),
        "{text}"
    );
    assert_eq!(e.problems.len(), 5, "{text}");
    let steps: Vec<Step> = e.problems.iter().map(|p| p.step).collect();
    assert_eq!(
        steps.iter().filter(|s| **s == Step::UnknownKey).count(),
        2,
        "{steps:?}"
    );
    assert_eq!(
        steps.iter().filter(|s| **s == Step::Invalid).count(),
        3,
        "{steps:?}"
    );
}

#[test]
fn rate_limit_is_checked() {
    let base = "[adapters.p]\nconnector = \"http\"\nurl = \"http://127.0.0.1:1/x\"\n";
    let ok = parse_str(&format!("{base}rate_limit = {{ per_sec = 2.5 }}\n")).unwrap();
    let r = ok.config.adapters["p"].rate_limit.expect("set");
    assert_eq!((r.per_sec, r.burst), (2.5, defaults::RATE_LIMIT_BURST));
    let e = parse_str(&format!(
        "{base}rate_limit = {{ per_sec = 0.0, burst = 0, colour = 1 }}\n"
    ))
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("test.toml:adapters.p.rate_limit.per_sec: 0 is not a positive"),
        "{text}"
    );
    assert!(
        text.contains("test.toml:adapters.p.rate_limit.burst: 0 would let no call"),
        "{text}"
    );
    assert!(
        text.contains("test.toml:adapters.p.rate_limit.colour: unknown key"),
        "{text}"
    );
}

#[test]
fn circuit_and_otlp_settings_are_checked() {
    let c = parse_str("").unwrap().config;
    assert_eq!(c.circuit, CircuitSection::default());
    assert_eq!(c.circuit.min_calls, defaults::CIRCUIT_MIN_CALLS);
    assert_eq!(c.circuit.failure_percent, 50);
    assert_eq!(c.ops.otlp_endpoint, None, "no export by default");
    let e = parse_str(
        "[ops]\notlp_endpoint = \"grpc://x:4317\"\n[circuit]\nopen_for = \"0s\"\nthreshold = 3\n",
    )
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("ops.otlp_endpoint: `grpc://x:4317` is not an http(s) URL"),
        "{text}"
    );
    assert!(
        text.contains("circuit.open_for: must be more than 0"),
        "{text}"
    );
    assert!(text.contains("circuit.threshold: unknown key"), "{text}");
    let e = parse_str("[circuit]\nfailure_percent = 0\nprobes = 0\nfailures = 10\n").unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("circuit.failure_percent: 0 is not a share"),
        "{text}"
    );
    assert!(
        text.contains("circuit.probes: must be at least 1"),
        "{text}"
    );
    assert!(text.contains("circuit.failures: unknown key"), "{text}");
    let ok = parse_str("[ops]\notlp_endpoint = \"http://127.0.0.1:4318\"\n[circuit]\nmin_calls = 0\nopen_for = \"0s\"\n")
        .unwrap()
        .config;
    assert_eq!(ok.circuit.min_calls, 0, "0 turns the breaker off");
}

#[test]
fn claim_lease_defaults_to_15s_and_must_be_above_zero() {
    let c = parse_str("").unwrap().config;
    assert_eq!(c.gateway.claim_lease.0, Duration::from_secs(15));
    let c = parse_str("[gateway]\nclaim_lease = \"2s\"\n")
        .unwrap()
        .config;
    assert_eq!(c.gateway.claim_lease.0, Duration::from_secs(2));
    let text = parse_str("[gateway]\nclaim_lease = \"0s\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("gateway.claim_lease: the claim lease is zero"),
        "{text}"
    );
}

#[test]
fn wrong_type_names_the_key() {
    let e = parse_str("[broker]\nprefetch = \"many\"\n").unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("test.toml:broker.prefetch: invalid value"),
        "{text}"
    );
}

#[test]
fn bad_duration_is_explained() {
    let e = parse_str("[retry]\ninitial = \"5 parsecs\"\n").unwrap_err();
    assert!(e.to_string().contains("retry.initial"), "{e}");
    let e = parse_duration("5x").unwrap_err();
    assert!(matches!(e, DurationError::UnknownUnit { .. }), "{e}");
    assert!(e.to_string().contains("unknown unit"), "{e}");
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(
        parse_duration("7d").unwrap(),
        Duration::from_secs(7 * 86400)
    );
}

#[test]
fn passwords_in_urls_are_refused_and_secrets_redacted() {
    let e = parse_str("[broker]\nurl = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("broker.url: the URL contains a password"),
        "{e}"
    );
    std::env::set_var("GW_TEST_SECRET_X", "s3cr3t-value");
    let l = parse_str(
        "[broker]\nurl = \"amqp://guest@127.0.0.1:5672/%2f\"\npassword = { env = \"GW_TEST_SECRET_X\" }\n",
    )
    .unwrap();
    let dbg = format!("{:?}", l.config);
    assert!(!dbg.contains("s3cr3t-value"), "{dbg}");
    let s = l
        .config
        .broker
        .password
        .as_ref()
        .unwrap()
        .resolve(Path::new("."))
        .unwrap();
    assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
    assert_eq!(
        l.broker_url().unwrap(),
        "amqp://guest:s3cr3t-value@127.0.0.1:5672/%2f"
    );
}

#[test]
fn missing_secret_is_a_clear_error() {
    let r = SecretRef::Env {
        env: "GW_TEST_SURELY_UNSET_42".into(),
    };
    assert_eq!(
        r.resolve(Path::new(".")).unwrap_err().to_string(),
        "environment variable GW_TEST_SURELY_UNSET_42 is not set"
    );
}

#[test]
fn empty_secrets_are_refused_not_taken_as_no_secret() {
    std::env::set_var("GW_TEST_EMPTY_SECRET_1", "");
    std::env::set_var("GW_TEST_BLANK_SECRET_1", "  \t ");
    for name in ["GW_TEST_EMPTY_SECRET_1", "GW_TEST_BLANK_SECRET_1"] {
        let r = SecretRef::Env { env: name.into() };
        assert_eq!(
            r.resolve(Path::new(".")).unwrap_err().to_string(),
            format!("environment variable {name} is empty: a secret must have a value")
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "\n").unwrap();
    let r = SecretRef::File {
        file: "token".into(),
    };
    let e = r.resolve(dir.path()).unwrap_err().to_string();
    assert!(
        e.ends_with("token is empty: a secret must have a value"),
        "{e}"
    );
    std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
    assert_eq!(r.resolve(dir.path()).unwrap().expose(), "t0ken");
}

#[test]
fn listen_addresses_are_decided_on_what_they_bind() {
    assert!(listen_is_loopback("127.0.0.1:8080"));
    assert!(listen_is_loopback("[::1]:8080"));
    assert!(listen_is_loopback("localhost:8080"));
    assert!(!listen_is_loopback("0.0.0.0:8080"));
    assert!(!listen_is_loopback("10.1.2.3:8080"));
    // Before, anything that was not an IP address counted as loopback.
    assert!(!listen_is_loopback("gateway.invalid:8080"));
    assert!(!listen_is_loopback("not an address"));
}

/// Payment orders need a token wherever the listener is not loopback (before, an open
/// listener let anyone pre-create a low-amount order for a dossier's fee).
#[test]
fn payments_without_a_token_are_refused_off_loopback() {
    let pay = "[payments]\n[payments.vnpay.v]\ntmn_code = \"T\"\nhash_secret = { env = \"X\" }\nreturn_url = \"https://r\"\n";
    let problems =
        |listen: &str| match parse_str(&format!("[inbound]\nlisten = \"{listen}\"\n{pay}")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };
    let e = problems("0.0.0.0:8080");
    assert!(
        e.contains("payments.token: no token on a non-loopback listener"),
        "{e}"
    );
    assert!(problems("gateway.invalid:8080").contains("payments.token"));
    assert_eq!(problems("127.0.0.1:8080"), "");
    let with_token = format!(
        "[inbound]\nlisten = \"0.0.0.0:8080\"\n{}",
        pay.replacen("[payments]\n", "[payments]\ntoken = { env = \"PT\" }\n", 1)
    );
    assert!(parse_str(&with_token).is_ok());
}

#[test]
fn plain_text_backends_off_this_machine_are_warned_about() {
    let w = |broker: &str, store: &str| {
        parse_str(&format!(
            "[broker]\nurl = \"{broker}\"\n[store]\nurl = \"{store}\"\n"
        ))
        .unwrap()
        .warnings()
    };
    assert!(w(
        "amqp://gw@127.0.0.1:5672/%2f",
        "postgres://gw@localhost:5432/gw"
    )
    .is_empty());
    let got = w(
        "amqp://gw@10.0.0.5:5672/%2f",
        "postgres://gw@db.internal:5432/gw",
    );
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].starts_with("broker.url: plain-text AMQP to 10.0.0.5"),
        "{got:?}"
    );
    assert!(
        got[1].starts_with("store.url: plain-text PostgreSQL to db.internal")
            && got[1].contains("set store.ca"),
        "{got:?}"
    );
    assert!(
        got[0].contains("write amqps://") && got[0].contains("broker.ca"),
        "{got:?}"
    );
    let tls = parse_str(
        "[broker]\nurl = \"amqps://gw@10.0.0.5:5671/%2f\"\nca = \"ca.pem\"\n\
         [store]\nurl = \"postgres://gw@db.internal:5432/gw?sslmode=verify-full\"\n\
         ca = \"ca.pem\"\n",
    )
    .unwrap();
    assert!(tls.warnings().is_empty(), "{:?}", tls.warnings());
    // A CA without sslmode means verify-full too: no warning.
    let ca_only =
        parse_str("[store]\nurl = \"postgres://gw@db.internal:5432/gw\"\nca = \"ca.pem\"\n")
            .unwrap();
    assert!(ca_only.warnings().is_empty(), "{:?}", ca_only.warnings());
}

#[test]
fn backend_tls_settings_that_cannot_work_are_problems() {
    let e = |text: &str| match parse_str(text) {
        Ok(_) => panic!("must be refused:\n{text}"),
        Err(e) => e.to_string(),
    };
    let got = e("[broker]\nurl = \"amqps://gw@10.0.0.5:5671/%2f\"\n");
    assert!(
        got.contains("broker.ca: an amqps:// URL needs the CA"),
        "{got}"
    );
    let got = e("[broker]\nurl = \"amqp://gw@10.0.0.5:5672/%2f\"\nca = \"ca.pem\"\n");
    assert!(
        got.contains("broker.ca: TLS files are set but the URL is plain amqp://"),
        "{got}"
    );
    let got = e("[broker]\nca = \"ca.pem\"\n");
    assert!(got.contains("the broker is the embedded queue"), "{got}");
    for mode in ["require", "verify-ca"] {
        let got = e(&format!(
            "[store]\nurl = \"postgres://gw@db/gw?sslmode={mode}\"\nca = \"ca.pem\"\n"
        ));
        assert!(
            got.contains(&format!("store.url: sslmode={mode} does not check"))
                && got.contains("sslmode=verify-full"),
            "{got}"
        );
    }
    let got = e("[store]\nurl = \"postgres://gw@db/gw?sslmode=verify-full\"\n");
    assert!(got.contains("set store.ca"), "{got}");
    let got = e("[store]\nurl = \"postgres://gw@db/gw?sslmode=disable\"\nca = \"ca.pem\"\n");
    assert!(
        got.contains("sslmode=disable contradicts store.ca"),
        "{got}"
    );
    let got = e("[store]\nca = \"ca.pem\"\n");
    assert!(got.contains("the store is SQLite"), "{got}");
    let got =
        e("[store]\nurl = \"postgres://gw@db/gw\"\nca = \"ca.pem\"\nclient_cert = \"c.pem\"\n");
    assert!(
        got.contains("store.client_cert: a client certificate needs its key"),
        "{got}"
    );
    let got = e(
        "[store]\nurl = \"postgres://gw@db/gw\"\nclient_cert = \"c.pem\"\nclient_key = \"k.pem\"\n",
    );
    assert!(
        got.contains("a client certificate is only sent over TLS"),
        "{got}"
    );
}

#[test]
fn kinds_match_patterns() {
    assert!(kind_matches("dossier.*", "dossier.upserted"));
    assert!(!kind_matches("dossier.*", "payment.settled"));
    assert!(kind_matches("*", "x"));
    assert!(kind_matches("a.b", "a.b"));
    assert!(!kind_matches("a.b", "a.bc"));
    assert!(kinds_admit(&[], "anything"));
    assert!(kinds_admit(&["dossier.*".to_string()], "dossier.progress"));
    assert!(!kinds_admit(&["dossier.*".to_string()], "payment.settled"));
}

const SIGNER_OK: &str = r#"
[signers.s]
service = "smartca"
url = "http://127.0.0.1:1"
trust_anchors = "certs-example/chain.pem"
sp_id = "sp"
sp_password = { env = "X" }
[[signers.s.officials]]
user_id = "a"
serial = "5000"
"#;

fn signer_problems(text: &str) -> String {
    match parse(text, "test.toml", PathBuf::from(env!("CARGO_MANIFEST_DIR"))) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

/// A minimal section of each service loads, with its defaults.
#[test]
fn signers_minimal_sections_load() {
    let l = parse(
        SIGNER_OK,
        "test.toml",
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    )
    .unwrap();
    let s = &l.config.signers["s"];
    assert_eq!(s.poll_interval.0, defaults::SIGNER_POLL_INTERVAL);
    assert_eq!(s.request_lifetime.0, defaults::SIGNER_REQUEST_LIFETIME);
    assert_eq!(s.digests, vec!["sha256".to_string()]);
    assert!(l
        .secret_refs()
        .iter()
        .any(|(k, _)| k == "signers.s.sp_password"));
}

/// A wrong value of each key gives a problem that names the key and the fix.
#[test]
fn signers_each_wrong_value_is_named() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "service = \"smartca\"",
            "service = \"vnpt\"",
            "signers.s.service: unknown service `vnpt`",
        ),
        (
            "url = \"http://127.0.0.1:1\"",
            "url = \"ftp://x\"",
            "signers.s.url",
        ),
        (
            "trust_anchors = \"certs-example/chain.pem\"",
            "trust_anchors = \"nope.pem\"",
            "signers.s.trust_anchors: cannot read",
        ),
        (
            "sp_id = \"sp\"",
            "sp_id = \"sp\"\nsignature_form = \"cms\"",
            "signers.s.signature_form",
        ),
        (
            "sp_id = \"sp\"",
            "sp_id = \"sp\"\nrsa_padding = \"oaep\"",
            "signers.s.rsa_padding: unknown padding",
        ),
        (
            "sp_id = \"sp\"",
            "sp_id = \"sp\"\ndigests = [\"sha1\"]",
            "signers.s.digests: unknown digest algorithm `sha1`",
        ),
        (
            "sp_id = \"sp\"",
            "sp_id = \"sp\"\npoll_interval = \"10s\"\npoll_max_interval = \"5s\"",
            "signers.s.poll_max_interval",
        ),
        (
            "sp_id = \"sp\"",
            "sp_id = \"sp\"\nrequest_lifetime = \"1s\"",
            "signers.s.request_lifetime",
        ),
        (
            "sp_id = \"sp\"",
            "sp_id = \"sp\"\nrate_limit = { per_sec = 0.0 }",
            "signers.s.rate_limit.per_sec",
        ),
        ("sp_id = \"sp\"\n", "", "signers.s.sp_id: missing"),
        (
            "sp_id = \"sp\"",
            "sp_id = \"sp\"\nprofile_id = \"p\"",
            "signers.s.profile_id: is a mysign setting",
        ),
        (
            "sp_id = \"sp\"",
            "sp_id = \"sp\"\noperation_mode = \"sync\"",
            "signers.s.operation_mode: is a csc setting",
        ),
        (
            "serial = \"5000\"",
            "serial = \"xyz\"",
            "signers.s.officials[0].serial: `xyz` is not a hexadecimal serial",
        ),
        (
            "serial = \"5000\"",
            "",
            "signers.s.officials[0].serial: the official's certificate is not pinned",
        ),
        (
            "serial = \"5000\"",
            "serial = \"5000\"\nsubject = \"CN=x\"",
            "signers.s.officials[0].subject: both",
        ),
        (
            "serial = \"5000\"",
            "serial = \"5000\"\ncredential_id = \"c\"",
            "officials[0].credential_id: smartca has no credential ids",
        ),
        (
            "user_id = \"a\"",
            "user_id = \"\"",
            "signers.s.officials[0].user_id: is empty",
        ),
        (
            "[[signers.s.officials]]\nuser_id = \"a\"\nserial = \"5000\"\n",
            "officials_file = \"missing.toml\"\n",
            "signers.s.officials_file: cannot read",
        ),
    ];
    for (from, to, want) in cases {
        assert!(SIGNER_OK.contains(from), "case {from}");
        let text = SIGNER_OK.replacen(from, to, 1);
        let got = signer_problems(&text);
        assert!(got.contains(want), "{to:?}: expected `{want}` in:\n{got}");
    }
    let bad_name = SIGNER_OK.replace("signers.s", "signers.Bad");
    assert!(signer_problems(&bad_name).contains("signers.Bad: `Bad` has characters"));
    // A listed twice, and an unknown key in an official.
    let twice = format!("{SIGNER_OK}[[signers.s.officials]]\nuser_id = \"a\"\nserial = \"5001\"\n");
    assert!(signer_problems(&twice).contains("officials[1].user_id: `a` is listed twice"));
    let unknown = SIGNER_OK.replace("serial = \"5000\"", "serial = \"5000\"\nphone = \"0912\"");
    assert!(!signer_problems(&unknown).is_empty());
    // MySign needs its credentials and each official's credential id.
    let mysign = SIGNER_OK
        .replace("service = \"smartca\"", "service = \"mysign\"")
        .replace("sp_id = \"sp\"\nsp_password = { env = \"X\" }\n", "");
    let got = signer_problems(&mysign);
    for want in [
        "signers.s.client_id: missing",
        "signers.s.client_secret: missing",
        "signers.s.profile_id: missing",
        "officials[0].credential_id: missing",
    ] {
        assert!(got.contains(want), "{want} in:\n{got}");
    }
}

/// Officials may come from a file; the example file's signers load.
#[test]
fn signers_officials_file() {
    let dir = std::env::temp_dir().join(format!("gw-officials-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("o.toml"),
        "[[officials]]\nuser_id = \"b\"\nserial = \"5001\"\n",
    )
    .unwrap();
    let text = SIGNER_OK.replace(
        "sp_id = \"sp\"",
        &format!(
            "sp_id = \"sp\"\nofficials_file = \"{}\"",
            dir.join("o.toml").display()
        ),
    );
    let l = parse(
        &text,
        "test.toml",
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    )
    .unwrap();
    let all = l.config.signers["s"].all_officials(&l.base).unwrap();
    assert_eq!(all.len(), 2);
    std::fs::write(
        dir.join("o.toml"),
        "[[officials]]\nuser_id = \"a\"\nserial = \"5001\"\n",
    )
    .unwrap();
    assert!(signer_problems(&text).contains("`a` is listed twice"));
    let ex = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.example.toml")).unwrap();
    assert_eq!(ex.config.signers.len(), 3);
}

/// Signature outcomes come from the source name `signatures`: a route may take them from it
/// only when signers are configured, and no `[sources]` table may take that name.
#[test]
fn signature_outcomes_have_their_own_source_name() {
    let route = r#"
[adapters.back]
connector = "http"
url = "http://127.0.0.1:9/back"

[[routes]]
name = "signatures-back"
from = "signatures"
kinds = ["signature.*"]
to = "back"
"#;
    assert_eq!(signer_problems(&format!("{SIGNER_OK}{route}")), "");
    let without = signer_problems(route);
    assert!(
        without.contains("routes[0].from: no source named `signatures`"),
        "{without}"
    );
    let clash = signer_problems(&format!(
        "{SIGNER_OK}\n[sources.signatures]\nkinds = [\"dossier.*\"]\n"
    ));
    assert!(clash.contains("sources.signatures"), "{clash}");
    assert!(clash.contains("rename the source"), "{clash}");
}

/// The gateway's operational events come from the source name `gateway`: a route may take
/// them from it, and no `[sources]` table may take that name.
#[test]
fn operational_events_have_their_own_source_name() {
    let route = r#"
[adapters.ops]
connector = "http"
url = "http://127.0.0.1:9/ops"

[[routes]]
name = "ops-events"
from = "gateway"
kinds = ["subscription.*"]
to = "ops"
"#;
    assert_eq!(OPS_SOURCE, "gateway");
    parse_str(route).unwrap_or_else(|e| panic!("a route from the gateway's source:\n{e}"));
    let clash = parse_str(&format!(
        "{route}\n[sources.gateway]\nkinds = [\"dossier.*\"]\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(clash.contains("sources.gateway"), "{clash}");
    assert!(clash.contains("rename the source"), "{clash}");
}

#[test]
fn subscriptions_are_checked_field_by_field() {
    let ok = r#"
[subscriptions.ioc]
agency = "Trung tâm IOC tỉnh"
delivery = "push"
kinds = ["dossier.upserted", "dossier.status"]
procedures = ["1.0012"]
units = ["000.00.01.H12"]
fields = ["code", "status", "procedure", "received_at", "due_at"]
personal = ["citizen_id"]
legal_basis = "Nghị định 107/2021/NĐ-CP, Điều 19"
[subscriptions.ioc.push]
url = "https://ioc.example/hook"
secret = [{ env = "IOC_WEBHOOK_SECRET" }, { env = "IOC_WEBHOOK_SECRET_OLD" }]
retry = ["5s", "5m"]
rate_per_s = 10.0
disable_after = "5d"
rfc9421 = { key = { file = "province.pem" }, keyid = "province-2026" }
[subscriptions.so-xd]
agency = "Sở Xây dựng"
delivery = "pull"
fields = ["code"]
[subscriptions.so-xd.pull]
token = { env = "SO_XD_FEED_TOKEN" }
signing = "feeds"
[signing.feeds]
scheme = "jws-detached"
key = "certs-example/sign-ec.key"
certificate = "certs-example/sign-ec.pem"
"#;
    let l = parse_str(ok).unwrap_or_else(|e| panic!("{e}"));
    let push = l.config.subscriptions["ioc"].push.as_ref().unwrap();
    assert_eq!(push.secret.refs().len(), 2);
    assert_eq!(push.retry.len(), 2);
    assert_eq!(push.concurrency, defaults::AGENCY_CONCURRENCY);
    assert_eq!(push.rfc9421.as_ref().unwrap().alg, "ecdsa-p256-sha256");
    let pull = l.config.subscriptions["so-xd"].pull.as_ref().unwrap();
    assert_eq!(pull.retention.0, defaults::FEED_RETENTION);
    assert_eq!(
        (pull.max_limit, pull.max_wait.0),
        (defaults::FEED_MAX_LIMIT, defaults::FEED_MAX_WAIT)
    );
    let e = parse_str(
        r#"
[subscriptions.Bad]
agency = ""
delivery = "email"
fields = ["code", "colour", "phone", "code"]
personal = ["status"]
[subscriptions.nobasis]
agency = "A"
delivery = "push"
fields = ["code"]
personal = ["citizen_id"]
[subscriptions.nobasis.push]
url = "ftp://x"
secret = []
concurrency = 0
rate_per_s = -1.0
retry = ["0s"]
rfc9421 = { key = { env = "K" }, keyid = "", alg = "hmac-sha256" }
[subscriptions.basis-only]
agency = "A"
delivery = "pull"
fields = []
legal_basis = "x"
[subscriptions.pushless]
agency = "A"
delivery = "push"
fields = ["code"]
[subscriptions.pushless.pull]
token = { env = "T" }
signing = "feeds"
"#,
    )
    .unwrap_err()
    .to_string();
    for want in [
        "subscriptions.Bad: `Bad` has characters",
        "subscriptions.Bad.agency: is empty",
        "subscriptions.Bad.delivery: unknown delivery `email`",
        "subscriptions.Bad.fields: unknown field `colour`",
        "subscriptions.Bad.fields: `phone` is personal data",
        "subscriptions.Bad.fields: `code` is listed twice",
        "subscriptions.Bad.personal: `status` is not personal data",
        "subscriptions.nobasis.legal_basis: personal fields are named without a legal basis",
        "subscriptions.nobasis.push.url: `ftp://x` is not an http(s) URL",
        "subscriptions.nobasis.push.secret: names no secret",
        "subscriptions.nobasis.push.concurrency: must be at least 1",
        "subscriptions.nobasis.push.rate_per_s: -1 is not a positive rate",
        "subscriptions.nobasis.push.retry: has a zero wait",
        "subscriptions.nobasis.push.rfc9421.keyid: is empty",
        "subscriptions.nobasis.push.rfc9421.alg: unknown algorithm `hmac-sha256`",
        "subscriptions.basis-only.fields: names no field",
        "subscriptions.basis-only.legal_basis: is set but `personal` names no field",
        "subscriptions.basis-only.pull: delivery is pull but there is no pull table",
        "subscriptions.pushless.push: delivery is push but there is no push table",
        "subscriptions.pushless.pull: delivery is `push`",
    ] {
        assert!(e.contains(want), "missing `{want}` in:\n{e}");
    }
    let e = parse_str("[subscriptions.x]\nagency = \"A\"\ndelivery = \"pull\"\nfields = [\"code\"]\ncolour = 1\n[subscriptions.x.pull]\ntoken = { env = \"T\" }\nsigning = \"s\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("subscriptions.x.colour: unknown key"), "{e}");
}

#[test]
fn pull_feeds_are_checked_key_by_key() {
    let e = parse_str(
        r#"
[subscriptions.feed-a]
agency = "A"
delivery = "pull"
fields = ["code"]
[subscriptions.feed-a.pull]
token = { env = "A_TOKEN" }
signing = "nowhere"
retention = "0s"
max_limit = 5000
max_wait = "10m"
[subscriptions.feed-b]
agency = "B"
delivery = "pull"
fields = ["code"]
[subscriptions.feed-b.pull]
token = { env = "B_TOKEN" }
signing = "rsa"
[subscriptions.feed-c]
agency = "C"
delivery = "pull"
fields = ["code"]
[subscriptions.feed-c.pull]
token = { env = "C_TOKEN" }
signing = "keyless"
[signing.rsa]
scheme = "jws-detached"
algorithm = "PS256"
key = "certs-example/sign-rsa.key"
certificate = "certs-example/sign-rsa.pem"
[signing.keyless]
scheme = "jws-detached"
trusted_keys = [{ key_id = "x", certificate = "certs-example/sign-ec.pem" }]
"#,
    )
    .unwrap_err()
    .to_string();
    for want in [
        "subscriptions.feed-a.pull.retention: must be at least 1s",
        "subscriptions.feed-a.pull.max_limit: 5000 is not from 1 to 1000",
        "subscriptions.feed-a.pull.max_wait: is above 5m",
        "subscriptions.feed-a.pull.signing: no signing profile named `nowhere`",
        "subscriptions.feed-b.pull.signing: profile `rsa` signs PS256; feed pages are signed ES256",
        "subscriptions.feed-c.pull.signing: profile `keyless` has no key to sign with",
    ] {
        assert!(e.contains(want), "missing `{want}` in:\n{e}");
    }
    let e = parse_str(
        "[subscriptions.x]\nagency = \"A\"\ndelivery = \"pull\"\nfields = [\"code\"]\n[subscriptions.x.pull]\nsigning = \"s\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("token"),
        "a pull table without a token is refused: {e}"
    );
}

/// The smallest valid axis adapter, with `extra` in its `[adapters.axis.axis]` table and
/// `signing` as its profile line.
fn axis_config(signing: &str, extra: &str) -> String {
    format!(
        r#"
[signing.edxml]
scheme = "xmldsig-enveloped"
key = "certs-example/sign-rsa.key"
certificate = "certs-example/sign-rsa.pem"
trust_anchors = "certs-example/chain.pem"

[signing.jws]
scheme = "jws-detached"
key = "certs-example/sign-ec.key"
certificate = "certs-example/sign-ec.pem"

[adapters.axis]
connector = "axis"
url = "https://127.0.0.1:8445/axis"
{signing}

[adapters.axis.axis]
system_id = "000.00.00.H22"
secret = {{ env = "GW_TEST_AXIS_SECRET" }}
organ_id = "000.00.00.H22"
{extra}

[[routes]]
name = "in"
from = "axis"
kinds = ["document.*"]
to = "axis"
"#
    )
}

#[test]
fn axis_adapter_loads_and_each_wrong_key_names_itself() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let parse_here = |s: &str| parse(s, "test.toml", dir.to_path_buf());
    let l = parse_here(&axis_config("signing = \"edxml\"", "")).unwrap();
    let x = l.config.adapters["axis"].axis.clone().unwrap();
    assert_eq!(x.send_path, defaults::AXIS_SEND_PATH);
    assert_eq!(x.source_name, defaults::AXIS_SOURCE);
    assert_eq!(x.poll_interval.0, defaults::AXIS_POLL_INTERVAL);
    assert!(l
        .secret_refs()
        .iter()
        .any(|(k, _)| k == "adapters.axis.axis.secret"));
    for (extra, signing, key) in [
        (
            "send_path = \"sendEdoc\"",
            "signing = \"edxml\"",
            "adapters.axis.axis.send_path",
        ),
        (
            "json_header = \"\"",
            "signing = \"edxml\"",
            "adapters.axis.axis.json_header",
        ),
        (
            "page_size = 0",
            "signing = \"edxml\"",
            "adapters.axis.axis.page_size",
        ),
        (
            "source_name = \"A B\"",
            "signing = \"edxml\"",
            "adapters.axis.axis.source_name",
        ),
        (
            "",
            "",
            "adapters.axis.signing: the axis refuses unsigned envelopes",
        ),
        (
            "",
            "signing = \"jws\"",
            "adapters.axis.signing: profile `jws` is jws-detached",
        ),
        (
            "trust = \"jws\"",
            "signing = \"edxml\"",
            "adapters.axis.axis.trust: profile `jws` has no trust_anchors",
        ),
        (
            "trust = \"nope\"",
            "signing = \"edxml\"",
            "adapters.axis.axis.trust: no signing profile named `nope`",
        ),
    ] {
        let e = parse_here(&axis_config(signing, extra))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{extra} / {signing}: {e}");
    }
    // Without its table.
    let e = parse_here(
        "[adapters.axis]\nconnector = \"axis\"\nurl = \"https://x/axis\"\nsigning = \"s\"\n[signing.s]\nscheme = \"none\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("adapters.axis.axis: the axis connector needs its settings"),
        "{e}"
    );
}
