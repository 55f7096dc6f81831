//! `[ops]`: the operations listener (health, metrics, the ops API and dashboard).

use serde::Deserialize;

use super::defaults;
use super::inbound::check_listen;
use super::names::valid_name;
use super::secrets::SecretRef;

#[derive(Debug, Clone, Deserialize)]
pub struct OpsSection {
    /// Address of the ops listener. Default `127.0.0.1:9090`.
    #[serde(default = "d_ops")]
    pub listen: String,
    /// Bearer tokens of the ops API and dashboard (`/api/v1/…`, `/`). None = the API and the
    /// dashboard are off; `/healthz`, `/readyz` and `/metrics` answer either way.
    #[serde(default)]
    pub tokens: Vec<OpsTokenSection>,
    /// OpenTelemetry: the OTLP endpoint (collector base URL, e.g. `http://127.0.0.1:4318` for
    /// OTLP/HTTP, `http://127.0.0.1:4317` for gRPC) that per-message spans are exported to;
    /// over HTTP at `<endpoint>/v1/traces`. None (the default) = no export.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// How spans travel to `otlp_endpoint`: `http/protobuf` (the default), `http/json` or
    /// `grpc` (the values of `OTEL_EXPORTER_OTLP_PROTOCOL`).
    #[serde(default)]
    pub otlp_protocol: OtlpProtocol,
}

/// The OTLP transport and encoding, spelt as the OpenTelemetry specification spells them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    /// Protobuf over HTTP POST to `<endpoint>/v1/traces`.
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// JSON over HTTP POST to `<endpoint>/v1/traces`.
    #[serde(rename = "http/json")]
    HttpJson,
    /// Protobuf over gRPC (the collector's `TraceService/Export`).
    #[serde(rename = "grpc")]
    Grpc,
}

impl Default for OpsSection {
    fn default() -> Self {
        Self {
            listen: d_ops(),
            tokens: Vec::new(),
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::default(),
        }
    }
}

/// One ops API token: `{ name = "alice", role = "operator", token = { env = "NAME" } }`.
#[derive(Debug, Clone, Deserialize)]
pub struct OpsTokenSection {
    /// Who holds it: recorded as `settled_by` on every replay and drop made with it.
    pub name: String,
    /// `viewer` (read only) or `operator` (may also replay and drop dead letters).
    pub role: OpsRole,
    /// The token value, by reference.
    pub token: SecretRef,
}

/// What an ops token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpsRole {
    /// Read the API and the dashboard.
    Viewer,
    /// Read, and replay or drop dead letters.
    Operator,
}

fn d_ops() -> String {
    defaults::OPS_LISTEN.into()
}

/// Check `ops.listen`: an address. (That it is not the inbound one: `references.rs`.)
pub(super) fn validate_listen(o: &OpsSection, p: &mut impl FnMut(String, String, &str)) {
    check_listen("ops.listen", &o.listen, p);
}

/// Check `ops.otlp_endpoint`: an http(s) URL.
pub(super) fn validate_otlp(o: &OpsSection, p: &mut impl FnMut(String, String, &str)) {
    if let Some(u) = &o.otlp_endpoint {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            p(
                "ops.otlp_endpoint".into(),
                format!("`{u}` is not an http(s) URL"),
                "write the collector's base URL, like http://127.0.0.1:4318 (gRPC: :4317)",
            );
        }
    }
}

/// Check `ops.tokens`: valid, distinct names.
pub(super) fn validate_tokens(o: &OpsSection, p: &mut impl FnMut(String, String, &str)) {
    let mut token_names = std::collections::BTreeSet::new();
    for (i, t) in o.tokens.iter().enumerate() {
        if !valid_name(&t.name) {
            p(
                format!("ops.tokens[{i}].name"),
                format!("`{}` has characters other than a-z, 0-9, - and _", t.name),
                "name the token after its holder, like alice",
            );
        }
        if !token_names.insert(t.name.clone()) {
            p(
                format!("ops.tokens[{i}].name"),
                format!("token `{}` is defined twice", t.name),
                "give each token its own name: replays and drops are recorded under it",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        ops: OpsSection,
    }

    #[test]
    fn otlp_protocol_defaults_to_http_protobuf_and_knows_three_values() {
        let d: Doc = toml::from_str("[ops]\n").unwrap();
        assert_eq!(d.ops.otlp_protocol, OtlpProtocol::HttpProtobuf);
        for (text, p) in [
            ("http/protobuf", OtlpProtocol::HttpProtobuf),
            ("http/json", OtlpProtocol::HttpJson),
            ("grpc", OtlpProtocol::Grpc),
        ] {
            let d: Doc = toml::from_str(&format!("[ops]\notlp_protocol = \"{text}\"\n")).unwrap();
            assert_eq!(d.ops.otlp_protocol, p);
        }
        let e = toml::from_str::<Doc>("[ops]\notlp_protocol = \"thrift\"\n")
            .err()
            .expect("an unknown protocol is refused");
        assert!(e.to_string().contains("http/protobuf"), "{e}");
    }
}
