//! The DVCQG payment platform (CONTRACTS.md §3): initiation with `MaXacThuc`, the result
//! callback (checksum enforced), and a transaction query for reconciliation.
//!
//! `MaXacThuc` is the SHA-256 hex of the listed fields joined with `|`, the shared key last
//! ([`gw_crypto::checksum::PaymentPlatform`]). The field order of every message is defined once,
//! in [`gw_crypto::checksum::PlatformMessage::fields`], and shared with the sandbox: [seen]
//! initiation and callback; [open] (not in the public material) the initiation answer
//! `{MaLoi, MoTaLoi, MaThamChieu, UrlThanhToan, MaXacThuc}`, our reply to the callback, and the
//! query message `LoaiBanTin = "TraCuuGiaoDich"` with its answer.
//!
//! Callback handling: checksum first (`99` and nothing recorded when it fails), then the
//! partner code, order and amount (`99`), then the durable record, then `00`. A repeated
//! callback for a settled order is answered `00` with `MoTaLoi` "already confirmed" and changes
//! nothing (the platform knows only `00` / `99`).

use std::time::Duration;

use async_trait::async_trait;

use crate::transport::stack::{Auth, BuildError, Outbound};
use gw_crypto::checksum::{PaymentPlatform as Checksum, PlatformMessage};
use gw_crypto::keys::Secret;
use gw_store::payments::PaymentOrder;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};

use super::hooks::{ProviderMessage, RefusedBecause};
use super::provider::{Provider, ProviderError, ProviderStatus};
use super::service::{Payments, Settle, Verdict};
use super::vnpay::vnp_date;

pub const PHIEN_BAN: &str = "1.0.0";
pub const LOAI_KHOI_TAO: &str = "KhoiTaoGiaoDich";
pub const LOAI_TRA_CUU: &str = "TraCuuGiaoDich";

pub use super::fields::field;
use super::fields::FieldError;

#[derive(Clone)]
pub struct PlatformSettings {
    pub name: String,
    /// `MaDoiTac`.
    pub partner_code: String,
    pub hash_key: String,
    /// Initiation endpoint.
    pub init_url: String,
    /// Query endpoint.
    pub query_url: String,
    /// `MaKenhThanhToan`, `LoaiHinhThanhToan`, `MaThietBi` as the platform assigned them.
    pub channel: String,
    pub payment_type: String,
    pub device: String,
    pub ip_addr: String,
    pub timeout: Duration,
}

pub struct Platform {
    s: PlatformSettings,
    sum: Checksum,
    http: Outbound,
}

/// The parsed callback (after its checksum verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    pub ma_loi: String,
    pub ma_doi_tac: String,
    pub ma_tham_chieu: String,
    pub so_tien: i64,
    pub ma_tien_te: String,
    pub ma_giao_dich: String,
    pub thoi_gian_gd: String,
}

/// Parse a callback body (no checksum check). Amounts are whole VND, as text or number.
pub fn parse_callback(v: &serde_json::Value) -> Result<Callback, FieldError> {
    if !v.is_object() {
        return Err(FieldError::NotObject("callback"));
    }
    let need = |k: &str| -> Result<String, FieldError> {
        let s = field(v, k);
        if s.is_empty() {
            Err(FieldError::Missing(k.into()))
        } else {
            Ok(s)
        }
    };
    let so_tien = need("SoTien")?;
    if !so_tien.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::NotWhole("SoTien".into()));
    }
    Ok(Callback {
        ma_loi: need("MaLoi")?,
        ma_doi_tac: need("MaDoiTac")?,
        ma_tham_chieu: need("MaThamChieu")?,
        so_tien: so_tien
            .parse()
            .map_err(|_| FieldError::TooLarge("SoTien".into()))?,
        ma_tien_te: need("MaTienTe")?,
        ma_giao_dich: field(v, "MaGiaoDich"),
        thoi_gian_gd: field(v, "ThoiGianGD"),
    })
}

impl Platform {
    pub fn new(s: PlatformSettings) -> Result<Self, BuildError> {
        Ok(Platform {
            sum: Checksum::new(Secret::new(s.hash_key.clone())),
            http: super::provider::provider_client(&s.name, s.timeout)?,
            s,
        })
    }

    /// `MaXacThuc` of message `m` over the fields of `v`.
    fn sign(&self, m: PlatformMessage, v: &serde_json::Value) -> Result<String, ProviderError> {
        self.sum
            .message(m)
            .sign(|f| field(v, f))
            .map_err(|e| ProviderError::Refused(e.to_string()))
    }

    /// Whether `v`'s `MaXacThuc` is message `m`'s over its fields.
    fn verifies(&self, m: PlatformMessage, v: &serde_json::Value) -> bool {
        self.sum
            .message(m)
            .verify(|f| field(v, f), &field(v, "MaXacThuc"))
            .is_ok()
    }

    /// The reply to a callback: `{MaLoi, MoTaLoi, MaDoiTac, MaThamChieu, ThoiGianGD, MaXacThuc}`.
    fn reply(&self, ok: bool, message: &str, reference: &str) -> serde_json::Value {
        let ma_loi = if ok { "00" } else { "99" };
        let t = vnp_date(crate::model::time::now_ms());
        let mut r = json!({
            "MaLoi": ma_loi,
            "MoTaLoi": message,
            "MaDoiTac": self.s.partner_code,
            "MaThamChieu": reference,
            "ThoiGianGD": t,
        });
        r["MaXacThuc"] = self
            .sign(PlatformMessage::CallbackReply, &r)
            .unwrap_or_default()
            .into();
        r
    }

    /// Handle a result callback; returns the JSON reply (always HTTP 200). Every refusal is
    /// handed to the evidence log with the message's digest before the reply.
    pub async fn handle_callback(&self, payments: &Payments, body: &[u8]) -> serde_json::Value {
        let v = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
        let reference = field(&v, "MaThamChieu");
        let message = ProviderMessage::new(body, &field(&v, "MaXacThuc"), &field(&v, "MaLoi"));
        let refuse = |because: RefusedBecause, why: &'static str| {
            let message = message.clone();
            let reference = reference.clone();
            async move {
                let reply = self.reply(false, why, &reference);
                payments
                    .refused(
                        &self.s.name,
                        &reference,
                        because,
                        message,
                        "99",
                        &serde_json::to_vec(&reply).expect("JSON"),
                    )
                    .await;
                info!(provider = %self.s.name, reference = %reference, because = because.as_str(), "payment platform callback refused");
                reply
            }
        };
        if !v.is_object() {
            return refuse(RefusedBecause::Malformed, "Du lieu khong hop le").await;
        }
        if !self.verifies(PlatformMessage::Callback, &v) {
            warn!(provider = %self.s.name, "payment platform callback with an invalid MaXacThuc refused");
            return refuse(RefusedBecause::Checksum, "Sai ma xac thuc").await;
        }
        let cb = match parse_callback(&v) {
            Ok(cb) => cb,
            Err(e) => {
                warn!(provider = %self.s.name, error = %e, "payment platform callback malformed");
                return refuse(RefusedBecause::Malformed, "Du lieu khong hop le").await;
            }
        };
        if cb.ma_doi_tac != self.s.partner_code || cb.ma_tien_te != "VND" {
            return refuse(RefusedBecause::Party, "Sai ma doi tac hoac tien te").await;
        }
        let verdict = Verdict {
            reference: cb.ma_tham_chieu.clone(),
            outcome: super::codes::platform(&cb.ma_loi),
            amount: cb.so_tien,
            provider_txn: (!cb.ma_giao_dich.is_empty()).then(|| cb.ma_giao_dich.clone()),
            code: cb.ma_loi.clone(),
            source: "callback",
            message: Some(message.clone()),
        };
        let (ok, msg) = match payments.settle(&verdict).await {
            Ok(Settle::Applied(_)) => (true, "Thanh cong"),
            Ok(Settle::AlreadySettled(_)) => (true, "Giao dich da duoc xac nhan truoc do"),
            Ok(Settle::Pending(_)) => (true, "Da ghi nhan"),
            Ok(Settle::NotFound) => {
                return refuse(RefusedBecause::UnknownOrder, "Khong tim thay giao dich").await
            }
            Ok(Settle::AmountMismatch { .. }) => {
                return refuse(RefusedBecause::Amount, "Sai so tien").await
            }
            Err(e) => {
                warn!(provider = %self.s.name, reference = %reference, error = %e, "payment platform callback not recorded");
                (false, "Loi he thong")
            }
        };
        info!(provider = %self.s.name, reference = %reference, amount = cb.so_tien, ok, "payment platform callback answered");
        self.reply(ok, msg, &reference)
    }

    async fn post(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ProviderError> {
        super::provider::post_json(&self.http, url, body, Auth::None).await
    }
}

#[async_trait]
impl Provider for Platform {
    fn name(&self) -> &str {
        &self.s.name
    }

    async fn create(&self, o: &PaymentOrder) -> Result<String, ProviderError> {
        let n = &o.order;
        let mut body = json!({
            "LoaiBanTin": LOAI_KHOI_TAO,
            "PhienBan": PHIEN_BAN,
            "MaDoiTac": self.s.partner_code,
            "MaThamChieu": n.reference,
            "SoTien": n.amount.to_string(),
            "LoaiHinhThanhToan": self.s.payment_type,
            "MaKenhThanhToan": self.s.channel,
            "MaThietBi": self.s.device,
            "NgonNgu": "vi",
            "MaTienTe": n.currency,
            "MaNganHang": "",
            "ThongTinGiaoDich": format!("Thanh toan le phi ho so {}", n.dossier_code),
            "ThoiGianGD": vnp_date(n.created_ms),
            "Ip": self.s.ip_addr,
            "MaHoSo": n.dossier_code,
        });
        body["MaXacThuc"] = self.sign(PlatformMessage::Init, &body)?.into();
        let a = self.post(&self.s.init_url, &body).await?;
        if !self.verifies(PlatformMessage::InitAnswer, &a) {
            return Err(ProviderError::Refused(
                "initiation answer MaXacThuc does not verify".into(),
            ));
        }
        if field(&a, "MaLoi") != "00" || field(&a, "MaThamChieu") != n.reference {
            return Err(ProviderError::Refused(format!(
                "initiation refused: {} {}",
                field(&a, "MaLoi"),
                field(&a, "MoTaLoi")
            )));
        }
        Ok(field(&a, "UrlThanhToan"))
    }

    async fn query(&self, o: &PaymentOrder) -> Result<ProviderStatus, ProviderError> {
        let n = &o.order;
        let mut body = json!({
            "LoaiBanTin": LOAI_TRA_CUU,
            "PhienBan": PHIEN_BAN,
            "MaDoiTac": self.s.partner_code,
            "MaThamChieu": n.reference,
            "ThoiGianGD": vnp_date(crate::model::time::now_ms()),
        });
        body["MaXacThuc"] = self.sign(PlatformMessage::Query, &body)?.into();
        let a = self.post(&self.s.query_url, &body).await?;
        if !self.verifies(PlatformMessage::QueryAnswer, &a) {
            return Err(ProviderError::Refused(
                "query answer MaXacThuc does not verify".into(),
            ));
        }
        if field(&a, "MaThamChieu") != n.reference {
            return Err(ProviderError::Refused(
                "query answered about another order".into(),
            ));
        }
        Ok(
            match (field(&a, "MaLoi").as_str(), field(&a, "TrangThai").as_str()) {
                ("01", _) => ProviderStatus::Unknown,
                ("00", "00") => ProviderStatus::Paid {
                    amount: field(&a, "SoTien")
                        .parse()
                        .map_err(|_| ProviderError::Refused("SoTien is not a number".into()))?,
                    txn: field(&a, "MaGiaoDich"),
                },
                ("00", "01") => ProviderStatus::Pending,
                ("00", code) => ProviderStatus::Failed { code: code.into() },
                (code, _) => return Err(ProviderError::Refused(format!("query answered {code}"))),
            },
        )
    }
}
