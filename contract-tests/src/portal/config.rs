//! The sandbox's configurable rules ([`PortalConfig`]): error codes, code style, status
//! table, units, credentials, paths.
//!
//! # Invariants
//!
//! - Every default is stated once, in the `Default` impls and [`default_statuses`]; the
//!   defaults are the contract's documented behaviour (see the module doc of [`super`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::catalogue::Catalogue;
use super::faults::Faults;
use super::services::DEFAULT_UNIT;

/// How `error_code` is written in answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeStyle {
    /// `0` and numbers (a non-numeric configured code stays a string).
    #[default]
    Number,
    /// `"00"` and strings.
    String,
    /// Numbers on the integration and login endpoints, strings on the sharing endpoint.
    Mixed,
}

/// The error codes the sandbox answers with ([open]: the real list is not public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorCodes {
    pub malformed: String,
    pub session_expired: String,
    pub login_failed: String,
    pub unknown_unit: String,
    pub unknown_service: String,
    pub invalid: String,
    pub duplicate: String,
    pub not_found: String,
    pub unknown_procedure: String,
    pub system_error: String,
}

impl Default for ErrorCodes {
    fn default() -> Self {
        let s = |c: &str| c.to_string();
        ErrorCodes {
            malformed: s("-1"),
            session_expired: s("-2"),
            login_failed: s("-3"),
            unknown_unit: s("-4"),
            unknown_service: s("-5"),
            invalid: s("-6"),
            duplicate: s("-7"),
            not_found: s("-8"),
            unknown_procedure: s("-9"),
            system_error: s("-10"),
        }
    }
}

/// The dossier status table [likely] (CONTRACTS.md section 1), the one place it is kept.
pub fn default_statuses() -> BTreeMap<u32, String> {
    [
        "Mới đăng ký",
        "Được tiếp nhận",
        "Không được tiếp nhận",
        "Đang xử lý",
        "Yêu cầu bổ sung giấy tờ",
        "Yêu cầu thực hiện nghĩa vụ tài chính",
        "Công dân yêu cầu rút hồ sơ",
        "Dừng xử lý",
        "Đã xử lý xong",
        "Đã trả kết quả",
    ]
    .iter()
    .enumerate()
    .map(|(i, s)| (i as u32 + 1, s.to_string()))
    .collect()
}

/// The sandbox's settings. Every field has a default (`PortalConfig::default()`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PortalConfig {
    /// Unit codes accepted in `dstcode` and `madonvi`.
    pub units: Vec<String>,
    pub username: String,
    pub password: String,
    /// The login `service` name on the integration endpoint ([open], default `DangNhap`).
    pub login_service: String,
    /// A dedicated login path ([open], default `/api/login`).
    pub login_path: String,
    pub integration_path: String,
    pub sharing_path: String,
    /// Session lifetime in milliseconds (default one hour).
    pub session_ttl_ms: u64,
    pub code_style: CodeStyle,
    pub codes: ErrorCodes,
    /// Dossier status codes and their names.
    pub statuses: BTreeMap<u32, String>,
    /// Refuse (not only report) fields the contract does not know.
    pub strict_unknown_fields: bool,
    /// Refuse a service sent to the other endpoint (a look-up on the integration endpoint, a
    /// sync on the sharing one) with `unknown_service` (default true).
    pub strict_endpoints: bool,
    /// `isUpdating=false` for a stored dossier code → `duplicate`.
    pub refuse_duplicate_create: bool,
    /// `isUpdating=true` for an unknown dossier code → `not_found`.
    pub refuse_update_unknown: bool,
    /// Progress or status for an unknown dossier code → `not_found`.
    pub refuse_progress_unknown: bool,
    pub faults: Faults,
    /// The catalogue at start; `None` = [`builtin_catalogue`](crate::portal::builtin_catalogue).
    pub catalogue: Option<Catalogue>,
    /// LGSP mode [seen in CONTRACTS.md §2]: when set, calls are authorized by
    /// `Authorization: Bearer <token>` from `POST {token_path}` (OAuth2 client credentials)
    /// instead of a session in the body.
    pub oauth2: Option<OAuth2Clients>,
    /// Path of the OAuth2 token endpoint (LGSP mode), default `/token`.
    pub token_path: String,
}

/// The client allowed to get tokens in LGSP mode, and how long tokens live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuth2Clients {
    pub client_id: String,
    pub client_secret: String,
    pub token_ttl_secs: u64,
}

impl Default for PortalConfig {
    fn default() -> Self {
        PortalConfig {
            units: vec![DEFAULT_UNIT.to_string()],
            username: "sandbox".into(),
            password: "sandbox-password".into(),
            login_service: "DangNhap".into(),
            login_path: "/api/login".into(),
            integration_path: "/api/integration".into(),
            sharing_path: "/api/sharing".into(),
            session_ttl_ms: 3_600_000,
            code_style: CodeStyle::Number,
            codes: ErrorCodes::default(),
            statuses: default_statuses(),
            strict_unknown_fields: false,
            strict_endpoints: true,
            refuse_duplicate_create: true,
            refuse_update_unknown: true,
            refuse_progress_unknown: true,
            faults: Faults::default(),
            catalogue: None,
            oauth2: None,
            token_path: "/token".into(),
        }
    }
}
