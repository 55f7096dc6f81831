//! The axis sandbox's settings: the systems that may call it, the organs it knows, the trust
//! anchors it verifies signatures against, the wire's names.

use std::path::PathBuf;

/// A system connected to the axis: its credentials and the organ it speaks for.
#[derive(Debug, Clone)]
pub struct AxisSystem {
    pub system_id: String,
    pub secret: String,
    /// The `OrganId` its envelopes must come `From`.
    pub organ_id: String,
}

/// Settings of an [`super::Axis`].
#[derive(Debug, Clone)]
pub struct AxisConfig {
    pub systems: Vec<AxisSystem>,
    /// Every organ id the axis knows (a `To` outside it is `UNKNOWN_ORGAN`), with its name.
    pub organs: Vec<(String, String)>,
    /// PEM trust anchors (the example root by default).
    pub trust_anchors: PathBuf,
    /// Paths of the four operations.
    pub send_path: String,
    pub list_path: String,
    pub get_path: String,
    pub status_path: String,
    /// HTTP header names of the credentials and of the JSON header.
    pub system_header: String,
    pub secret_header: String,
    pub json_header: String,
    /// The organ key answering `/_sandbox/respond` (PEM key, PEM certificate then chain).
    pub responder_key: PathBuf,
    pub responder_cert: PathBuf,
}

pub use crate::examples::certs_example;

/// The province's system in the default settings.
pub const PROVINCE_SYSTEM: &str = "000.00.00.H22";
pub const PROVINCE_SECRET: &str = "sandbox-axis-secret";

impl Default for AxisConfig {
    fn default() -> Self {
        let organ = |id: &str, name: &str| (id.to_owned(), name.to_owned());
        AxisConfig {
            systems: vec![
                AxisSystem {
                    system_id: PROVINCE_SYSTEM.into(),
                    secret: PROVINCE_SECRET.into(),
                    organ_id: "000.00.00.H22".into(),
                },
                AxisSystem {
                    system_id: "000.00.01.H22".into(),
                    secret: "sandbox-tnmt-secret".into(),
                    organ_id: "000.00.01.H22".into(),
                },
            ],
            organs: vec![
                organ("000.00.00.H22", "Ủy ban nhân dân tỉnh Quảng Ninh"),
                organ(
                    "000.00.01.H22",
                    "Sở Tài nguyên và Môi trường tỉnh Quảng Ninh",
                ),
                organ("000.00.02.H22", "Sở Xây dựng tỉnh Quảng Ninh"),
                organ("000.00.00.G03", "Bộ Tài nguyên và Môi trường"),
            ],
            trust_anchors: certs_example().join("root-ca.pem"),
            send_path: "/sendEdoc".into(),
            list_path: "/getReceivedEdocList".into(),
            get_path: "/getEdoc".into(),
            status_path: "/updateStatus".into(),
            system_header: "systemId".into(),
            secret_header: "secret".into(),
            json_header: "edoc-header".into(),
            responder_key: certs_example().join("sign-ec.key"),
            responder_cert: certs_example().join("sign-ec.pem"),
        }
    }
}
