//! The payment parties' checksum schemes, each a named type with `sign`/`verify`.
//!
//! Invariants:
//! - Each scheme's input string is built by one function (`*_data`), public so a mismatch with a
//!   party can be diagnosed by comparing strings, never by guessing.
//! - Checksums are produced as lower-case hex; verification accepts either case and compares the
//!   decoded bytes in constant time (`openssl::memcmp::eq`).
//! - Secrets are held as [`Secret`] and never printed.
//! - Each party's field orders are defined here once ([`PlatformMessage::fields`],
//!   [`PAYGOV_FIELDS`], [`MoMoMessage::fields`]); the gateway's connectors and the contract-test sandboxes both use them,
//!   so the two sides cannot disagree on them (this module's tests pin the orders).
//!
//! | Type | Scheme |
//! |------|--------|
//! | [`VnPay`] | hex HMAC-SHA512 over the key-sorted, form-urlencoded (space as `+`) query, without `vnp_SecureHash` / `vnp_SecureHashType` and empty values |
//! | [`MoMo`] | hex HMAC-SHA256 over `k1=v1&k2=v2...` in the order MoMo prescribes for the message type, values raw |
//! | [`PaymentPlatform`] | `MaXacThuc`: hex SHA-256 (plain hash, not HMAC) of the fields joined with `\|`, the shared key as last element; the fields of each message: [`PlatformMessage`] |
//! | [`PayGov`] | hex SHA-256 of `secretKey + accessKey + partnerCode + orderId + requestCode + amount` ([`PAYGOV_FIELDS`]) |

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

use crate::digest::sha256_hex;
use crate::keys::Secret;
use crate::util::{ct_eq, hex};

/// Checksum verification errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChecksumError {
    #[error("checksum field {0} is missing")]
    Missing(&'static str),
    #[error("checksum is not hex")]
    NotHex,
    #[error("checksum does not match")]
    Mismatch,
    #[error("OpenSSL: {0}")]
    Crypto(String),
}

impl From<openssl::error::ErrorStack> for ChecksumError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        ChecksumError::Crypto(e.to_string())
    }
}

fn hmac_hex(md: MessageDigest, key: &[u8], data: &[u8]) -> Result<String, ChecksumError> {
    let pkey = PKey::hmac(key)?;
    let mut signer = Signer::new(md, &pkey)?;
    signer.update(data)?;
    Ok(hex(&signer.sign_to_vec()?))
}

fn unhex(s: &str) -> Result<Vec<u8>, ChecksumError> {
    let s = s.trim().as_bytes();
    if s.len() & 1 != 0 {
        return Err(ChecksumError::NotHex);
    }
    let nib = |c: u8| -> Result<u8, ChecksumError> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(ChecksumError::NotHex),
        }
    };
    s.chunks(2)
        .map(|p| Ok(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

/// Compares an expected hex checksum with a received one, case-insensitively, in constant time.
fn hex_matches(expected_hex: &str, received_hex: &str) -> Result<(), ChecksumError> {
    let expected = unhex(expected_hex)?;
    let received = unhex(received_hex)?;
    if ct_eq(&expected, &received) {
        Ok(())
    } else {
        Err(ChecksumError::Mismatch)
    }
}

/// `application/x-www-form-urlencoded` byte serialisation (WHATWG URL §5.2): alphanumerics and
/// `*-._` kept, space as `+`, everything else `%XX` upper-case, as VNPay's Java sample produces.
pub fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// VNPay payment gateway: `vnp_SecureHash`.
pub struct VnPay {
    hash_secret: Secret,
}

impl VnPay {
    pub const HASH_FIELD: &'static str = "vnp_SecureHash";
    pub const HASH_TYPE_FIELD: &'static str = "vnp_SecureHashType";

    pub fn new(hash_secret: Secret) -> Self {
        VnPay { hash_secret }
    }

    /// The signed string: fields sorted by name (byte order), without the hash fields and empty
    /// values, each `urlencode(name)=urlencode(value)`, joined with `&`.
    pub fn hash_data(params: &[(String, String)]) -> String {
        let mut fields: Vec<&(String, String)> = params
            .iter()
            .filter(|(k, v)| k != Self::HASH_FIELD && k != Self::HASH_TYPE_FIELD && !v.is_empty())
            .collect();
        fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        fields
            .iter()
            .map(|(k, v)| format!("{}={}", form_urlencode(k), form_urlencode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// Hex HMAC-SHA512 of [`VnPay::hash_data`].
    pub fn sign(&self, params: &[(String, String)]) -> Result<String, ChecksumError> {
        hmac_hex(
            MessageDigest::sha512(),
            self.hash_secret.expose().as_bytes(),
            Self::hash_data(params).as_bytes(),
        )
    }

    /// Hex HMAC-SHA512 of a raw string: the transaction API (`querydr`, `refund`) signs its
    /// fields joined with `|` in a fixed order, not the sorted query.
    pub fn sign_raw(&self, data: &str) -> Result<String, ChecksumError> {
        hmac_hex(
            MessageDigest::sha512(),
            self.hash_secret.expose().as_bytes(),
            data.as_bytes(),
        )
    }

    /// Verifies a [`VnPay::sign_raw`] checksum.
    pub fn verify_raw(&self, data: &str, received: &str) -> Result<(), ChecksumError> {
        hex_matches(&self.sign_raw(data)?, received)
    }

    /// Verifies the `vnp_SecureHash` carried in `params` (e.g. a return URL or IPN query).
    pub fn verify(&self, params: &[(String, String)]) -> Result<(), ChecksumError> {
        let received = params
            .iter()
            .find(|(k, _)| k == Self::HASH_FIELD)
            .map(|(_, v)| v.as_str())
            .ok_or(ChecksumError::Missing(Self::HASH_FIELD))?;
        hex_matches(&self.sign(params)?, received)
    }
}

/// MoMo wallet: `signature`.
pub struct MoMo {
    secret_key: Secret,
}

impl MoMo {
    pub fn new(secret_key: Secret) -> Self {
        MoMo { secret_key }
    }

    /// `k1=v1&k2=v2...` in exactly the given order, values as-is (MoMo's raw signature string).
    pub fn raw_data(fields: &[(&str, &str)]) -> String {
        fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// Hex HMAC-SHA256 of [`MoMo::raw_data`].
    pub fn sign(&self, fields: &[(&str, &str)]) -> Result<String, ChecksumError> {
        hmac_hex(
            MessageDigest::sha256(),
            self.secret_key.expose().as_bytes(),
            Self::raw_data(fields).as_bytes(),
        )
    }

    pub fn verify(&self, fields: &[(&str, &str)], signature: &str) -> Result<(), ChecksumError> {
        hex_matches(&self.sign(fields)?, signature)
    }

    /// The signature of message `m`: [`MoMo::sign`] over [`MoMoMessage::fields`], each value
    /// taken by name from `value`.
    pub fn sign_message(
        &self,
        m: MoMoMessage,
        value: impl Fn(&str) -> String,
    ) -> Result<String, ChecksumError> {
        let values: Vec<String> = m.fields().iter().map(|f| value(f)).collect();
        let pairs: Vec<(&str, &str)> = m
            .fields()
            .iter()
            .zip(&values)
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        self.sign(&pairs)
    }

    pub fn verify_message(
        &self,
        m: MoMoMessage,
        value: impl Fn(&str) -> String,
        signature: &str,
    ) -> Result<(), ChecksumError> {
        hex_matches(&self.sign_message(m, value)?, signature)
    }
}

/// The MoMo (API v2) messages that carry a `signature`, each with its field order [likely]
/// (alphabetical, `accessKey` being the partner's access key), defined once for the gateway's
/// connector and the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MoMoMessage {
    /// `POST /v2/gateway/api/create`.
    Create,
    /// The IPN MoMo posts to the partner's `ipnUrl`.
    Ipn,
    /// `POST /v2/gateway/api/query`.
    Query,
}

impl MoMoMessage {
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            MoMoMessage::Create => &[
                "accessKey",
                "amount",
                "extraData",
                "ipnUrl",
                "orderId",
                "orderInfo",
                "partnerCode",
                "redirectUrl",
                "requestId",
                "requestType",
            ],
            MoMoMessage::Ipn => &[
                "accessKey",
                "amount",
                "extraData",
                "message",
                "orderId",
                "orderInfo",
                "orderType",
                "partnerCode",
                "payType",
                "requestId",
                "responseTime",
                "resultCode",
                "transId",
            ],
            MoMoMessage::Query => &["accessKey", "orderId", "partnerCode", "requestId"],
        }
    }
}

/// The messages of the DVCQG payment platform that carry a `MaXacThuc`. Each one's field order
/// is defined here, once ([`PlatformMessage::fields`]), for the gateway's connector and the
/// sandbox alike; [`PaymentPlatform::message`] is its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlatformMessage {
    /// `KhoiTaoGiaoDich`, the initiation [seen].
    Init,
    /// The initiation answer [open].
    InitAnswer,
    /// `KetQuaGiaoDich`, the result callback [seen].
    Callback,
    /// Our reply to the callback [open].
    CallbackReply,
    /// `TraCuuGiaoDich`, the transaction query [open].
    Query,
    /// The query answer [open]. `TrangThai`: `00` paid, `01` pending, `02` failed.
    QueryAnswer,
}

impl PlatformMessage {
    pub const ALL: [PlatformMessage; 6] = [
        PlatformMessage::Init,
        PlatformMessage::InitAnswer,
        PlatformMessage::Callback,
        PlatformMessage::CallbackReply,
        PlatformMessage::Query,
        PlatformMessage::QueryAnswer,
    ];

    /// The fields `MaXacThuc` covers, in order (the key follows them).
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            PlatformMessage::Init => &[
                "LoaiBanTin",
                "PhienBan",
                "MaDoiTac",
                "MaThamChieu",
                "SoTien",
                "LoaiHinhThanhToan",
                "MaKenhThanhToan",
                "MaThietBi",
                "NgonNgu",
                "MaTienTe",
                "MaNganHang",
                "ThongTinGiaoDich",
                "ThoiGianGD",
                "Ip",
            ],
            PlatformMessage::InitAnswer => &["MaLoi", "MaThamChieu", "UrlThanhToan"],
            PlatformMessage::Callback => &[
                "LoaiBanTin",
                "MaLoi",
                "MaDoiTac",
                "MaThamChieu",
                "SoTien",
                "MaTienTe",
                "MaGiaoDich",
                "MaNganHang",
                "ThoiGianGD",
                "ThongTinGiaoDich",
            ],
            PlatformMessage::CallbackReply => &["MaLoi", "MaDoiTac", "MaThamChieu", "ThoiGianGD"],
            PlatformMessage::Query => &[
                "LoaiBanTin",
                "PhienBan",
                "MaDoiTac",
                "MaThamChieu",
                "ThoiGianGD",
            ],
            PlatformMessage::QueryAnswer => &[
                "MaLoi",
                "MaDoiTac",
                "MaThamChieu",
                "SoTien",
                "TrangThai",
                "MaGiaoDich",
            ],
        }
    }
}

/// The national public-service portal's payment platform (DVCQG): `MaXacThuc`.
pub struct PaymentPlatform {
    key: Secret,
    /// Each [`PlatformMessage`]'s checksum, in [`PlatformMessage::ALL`] order.
    messages: Vec<FieldChecksum>,
}

impl PaymentPlatform {
    pub fn new(key: Secret) -> Self {
        let messages = PlatformMessage::ALL
            .iter()
            .map(|m| {
                let mut fields: Vec<String> = m.fields().iter().map(|f| f.to_string()).collect();
                fields.push(SECRET_FIELD.into());
                FieldChecksum::new(
                    FieldAlgorithm::Sha256,
                    fields,
                    "|",
                    Secret::new(key.expose()),
                )
            })
            .collect();
        PaymentPlatform { key, messages }
    }

    /// The `MaXacThuc` of message `m`: `sign` / `verify` take each field's value by name
    /// (SHA-256 of the values of [`PlatformMessage::fields`] joined with `|`, the key last,
    /// exactly [`PaymentPlatform::ma_xac_thuc`] of those values).
    pub fn message(&self, m: PlatformMessage) -> &FieldChecksum {
        let i = PlatformMessage::ALL
            .iter()
            .position(|x| *x == m)
            .expect("every message is in ALL");
        &self.messages[i]
    }

    /// Fields joined with `|`, the key appended as the last element.
    pub fn raw_data(&self, fields: &[&str]) -> String {
        let mut s = fields.join("|");
        s.push('|');
        s.push_str(self.key.expose());
        s
    }

    /// `MaXacThuc`: hex SHA-256 of [`PaymentPlatform::raw_data`] (a plain hash, not an HMAC).
    pub fn ma_xac_thuc(&self, fields: &[&str]) -> Result<String, ChecksumError> {
        Ok(sha256_hex(self.raw_data(fields).as_bytes()))
    }

    pub fn verify(&self, fields: &[&str], ma_xac_thuc: &str) -> Result<(), ChecksumError> {
        hex_matches(&self.ma_xac_thuc(fields)?, ma_xac_thuc)
    }
}

/// The pseudo-field of a [`FieldChecksum`] that stands for the secret itself.
pub const SECRET_FIELD: &str = "secretKey";

/// PayGov's creation checksum fields, in order [seen]: SHA-256 hex of their values
/// concatenated.
pub const PAYGOV_FIELDS: [&str; 6] = [
    SECRET_FIELD,
    "accessKey",
    "partnerCode",
    "orderId",
    "requestCode",
    "amount",
];

/// The default of PayGov's callback checksum, whose formula is [open]: every field of the
/// callback that carries meaning (the result code and the transaction among them), so that
/// a failed callback cannot be turned into a paid one, and never the same value as the
/// creation checksum (which whoever sees the creation request learns).
pub const PAYGOV_CALLBACK_FIELDS: [&str; 10] = [
    SECRET_FIELD,
    "accessKey",
    "partnerCode",
    "orderId",
    "requestCode",
    "amount",
    "transactionNo",
    "transactionCode",
    "payDate",
    "errorCode",
];

/// Fields a PayGov callback checksum must cover: without them a callback's order, amount or
/// result could be changed and still verify.
pub const PAYGOV_CALLBACK_REQUIRED: [&str; 3] = ["orderId", "amount", "errorCode"];

/// PayGov request checksum ([`PAYGOV_FIELDS`]).
pub struct PayGov {
    access_key: String,
    partner_code: String,
    sum: FieldChecksum,
}

impl PayGov {
    pub fn new(
        secret_key: Secret,
        access_key: impl Into<String>,
        partner_code: impl Into<String>,
    ) -> Self {
        PayGov {
            access_key: access_key.into(),
            partner_code: partner_code.into(),
            sum: FieldChecksum::new(
                FieldAlgorithm::Sha256,
                PAYGOV_FIELDS.map(String::from).to_vec(),
                "",
                secret_key,
            ),
        }
    }

    /// hex SHA-256 of `secretKey + accessKey + partnerCode + orderId + requestCode + amount`.
    pub fn checksum(
        &self,
        order_id: &str,
        request_code: &str,
        amount: &str,
    ) -> Result<String, ChecksumError> {
        self.sum.sign(|f| {
            match f {
                "accessKey" => &self.access_key,
                "partnerCode" => &self.partner_code,
                "orderId" => order_id,
                "requestCode" => request_code,
                "amount" => amount,
                _ => "",
            }
            .to_string()
        })
    }

    pub fn verify(
        &self,
        order_id: &str,
        request_code: &str,
        amount: &str,
        checksum: &str,
    ) -> Result<(), ChecksumError> {
        hex_matches(&self.checksum(order_id, request_code, amount)?, checksum)
    }
}

/// A checksum whose formula is configured rather than known (PayGov's callback, [open]):
/// the values of `fields` (in order) joined with `separator`, then hex SHA-256 of that string
/// (the secret is then one of the fields), or hex HMAC-SHA256 / HMAC-SHA512 keyed with the
/// secret.
pub struct FieldChecksum {
    pub algorithm: FieldAlgorithm,
    pub fields: Vec<String>,
    pub separator: String,
    secret: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldAlgorithm {
    Sha256,
    HmacSha256,
    HmacSha512,
}

impl FieldAlgorithm {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sha256" => Some(Self::Sha256),
            "hmac-sha256" => Some(Self::HmacSha256),
            "hmac-sha512" => Some(Self::HmacSha512),
            _ => None,
        }
    }
}

impl FieldChecksum {
    pub fn new(
        algorithm: FieldAlgorithm,
        fields: Vec<String>,
        separator: impl Into<String>,
        secret: Secret,
    ) -> Self {
        FieldChecksum {
            algorithm,
            fields,
            separator: separator.into(),
            secret,
        }
    }

    /// The signed string: `value(field)` for each field, joined. `value` receives the field
    /// name; the pseudo-field `secretKey` is the secret itself.
    pub fn data(&self, value: impl Fn(&str) -> String) -> String {
        self.fields
            .iter()
            .map(|f| {
                if f == SECRET_FIELD {
                    self.secret.expose().to_string()
                } else {
                    value(f)
                }
            })
            .collect::<Vec<_>>()
            .join(&self.separator)
    }

    pub fn sign(&self, value: impl Fn(&str) -> String) -> Result<String, ChecksumError> {
        let data = self.data(value);
        let key = self.secret.expose().as_bytes();
        match self.algorithm {
            FieldAlgorithm::Sha256 => Ok(sha256_hex(data.as_bytes())),
            FieldAlgorithm::HmacSha256 => hmac_hex(MessageDigest::sha256(), key, data.as_bytes()),
            FieldAlgorithm::HmacSha512 => hmac_hex(MessageDigest::sha512(), key, data.as_bytes()),
        }
    }

    pub fn verify(
        &self,
        value: impl Fn(&str) -> String,
        received: &str,
    ) -> Result<(), ChecksumError> {
        hex_matches(&self.sign(value)?, received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn vnpay_hash_data_sorts_encodes_and_excludes() {
        let params = p(&[
            ("vnp_OrderInfo", "Thanh toan ho so: H00/1"),
            ("vnp_Amount", "1000000"),
            ("vnp_SecureHashType", "HmacSHA512"),
            ("vnp_BankCode", ""),
            ("vnp_SecureHash", "abc"),
            ("vnp_Command", "pay"),
        ]);
        assert_eq!(
            VnPay::hash_data(&params),
            "vnp_Amount=1000000&vnp_Command=pay&vnp_OrderInfo=Thanh+toan+ho+so%3A+H00%2F1"
        );
        assert_eq!(form_urlencode("Nguyễn *a-b._~"), "Nguy%E1%BB%85n+*a-b._%7E");
    }

    #[test]
    fn sign_verify_and_tamper_each_scheme() {
        let vnp = VnPay::new(Secret::new("SECRET"));
        let mut params = p(&[("vnp_Amount", "1000000"), ("vnp_TxnRef", "42")]);
        let h = vnp.sign(&params).unwrap();
        assert_eq!(h.len(), 128);
        params.push(("vnp_SecureHash".into(), h.to_uppercase()));
        vnp.verify(&params).unwrap();
        params[0].1 = "1".into();
        assert_eq!(vnp.verify(&params), Err(ChecksumError::Mismatch));
        assert_eq!(
            vnp.verify(&params[..1]),
            Err(ChecksumError::Missing("vnp_SecureHash"))
        );

        let momo = MoMo::new(Secret::new("K"));
        let fields = [("accessKey", "A"), ("amount", "1000"), ("orderId", "O1")];
        let s = momo.sign(&fields).unwrap();
        momo.verify(&fields, &s).unwrap();
        assert_eq!(momo.verify(&fields[..2], &s), Err(ChecksumError::Mismatch));
        assert_eq!(momo.verify(&fields, "zz"), Err(ChecksumError::NotHex));

        let pp = PaymentPlatform::new(Secret::new("KEY"));
        assert_eq!(pp.raw_data(&["a", "b"]), "a|b|KEY");
        let m = pp.ma_xac_thuc(&["a", "b"]).unwrap();
        pp.verify(&["a", "b"], &m).unwrap();
        assert_eq!(pp.verify(&["a", "c"], &m), Err(ChecksumError::Mismatch));

        let pg = PayGov::new(Secret::new("S"), "A", "P");
        let c = pg.checksum("O", "R", "100").unwrap();
        assert_eq!(c, sha256_hex(b"SAPOR100"));
        pg.verify("O", "R", "100", &c).unwrap();
        assert_eq!(pg.verify("O", "R", "101", &c), Err(ChecksumError::Mismatch));

        // The configured scheme reproduces PayGov's request formula, and HMAC variants.
        let fc = FieldChecksum::new(
            FieldAlgorithm::Sha256,
            [
                "secretKey",
                "accessKey",
                "partnerCode",
                "orderId",
                "requestCode",
                "amount",
            ]
            .map(String::from)
            .to_vec(),
            "",
            Secret::new("S"),
        );
        let get = |f: &str| {
            match f {
                "accessKey" => "A",
                "partnerCode" => "P",
                "orderId" => "O",
                "requestCode" => "R",
                "amount" => "100",
                _ => "",
            }
            .to_string()
        };
        assert_eq!(fc.sign(get).unwrap(), c);
        let h = FieldChecksum::new(
            FieldAlgorithm::HmacSha256,
            vec!["orderId".into(), "amount".into()],
            "|",
            Secret::new("S"),
        );
        assert_eq!(h.data(get), "O|100");
        let sig = h.sign(get).unwrap();
        h.verify(get, &sig).unwrap();
        assert_eq!(h.verify(|_| "x".into(), &sig), Err(ChecksumError::Mismatch));
    }

    #[test]
    fn momo_messages_sign_their_fields_in_order() {
        let momo = MoMo::new(Secret::new("K"));
        let get = |f: &str| format!("v{}", f.len());
        for m in [MoMoMessage::Create, MoMoMessage::Ipn, MoMoMessage::Query] {
            let mut sorted = m.fields().to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, m.fields(), "{m:?}: MoMo's orders are alphabetical");
            let sig = momo.sign_message(m, get).unwrap();
            let values: Vec<String> = m.fields().iter().map(|f| get(f)).collect();
            let pairs: Vec<(&str, &str)> = m
                .fields()
                .iter()
                .zip(&values)
                .map(|(k, v)| (*k, v.as_str()))
                .collect();
            assert_eq!(sig, momo.sign(&pairs).unwrap());
            momo.verify_message(m, get, &sig).unwrap();
            for f in m.fields() {
                let changed = |g: &str| if g == *f { "x".into() } else { get(g) };
                assert_eq!(
                    momo.verify_message(m, changed, &sig),
                    Err(ChecksumError::Mismatch),
                    "{m:?} {f}"
                );
            }
        }
        assert_eq!(
            MoMo::raw_data(&[
                ("accessKey", "A"),
                ("orderId", "O"),
                ("partnerCode", "P"),
                ("requestId", "R")
            ]),
            "accessKey=A&orderId=O&partnerCode=P&requestId=R"
        );
    }

    #[test]
    fn platform_messages_are_the_plain_scheme_over_their_field_order() {
        let pp = PaymentPlatform::new(Secret::new("KEY"));
        // Each field's value is its name in lower case, so the order shows in the data.
        let get = |f: &str| f.to_lowercase();
        for m in PlatformMessage::ALL {
            let values: Vec<String> = m.fields().iter().map(|f| get(f)).collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let sum = pp.message(m);
            assert_eq!(sum.data(get), pp.raw_data(&refs), "{m:?}");
            let sig = sum.sign(get).unwrap();
            assert_eq!(sig, pp.ma_xac_thuc(&refs).unwrap(), "{m:?}");
            pp.verify(&refs, &sig).unwrap();
            // Changing any covered field breaks it; a field not covered does not.
            for f in m.fields() {
                let changed = |g: &str| if g == *f { "x".into() } else { get(g) };
                assert_eq!(
                    sum.verify(changed, &sig),
                    Err(ChecksumError::Mismatch),
                    "{m:?} {f}"
                );
            }
            let other = |g: &str| if g == "MaHoSo" { "x".into() } else { get(g) };
            sum.verify(other, &sig).unwrap();
        }
        // The orders themselves (CONTRACTS.md §3 and the [open] shapes mirrored by the sandbox).
        assert_eq!(
            pp.message(PlatformMessage::Callback).data(get),
            "loaibantin|maloi|madoitac|mathamchieu|sotien|matiente|magiaodich|manganhang|\
             thoigiangd|thongtingiaodich|KEY"
        );
        assert_eq!(
            pp.message(PlatformMessage::Init).data(get),
            "loaibantin|phienban|madoitac|mathamchieu|sotien|loaihinhthanhtoan|makenhthanhtoan|\
             mathietbi|ngonngu|matiente|manganhang|thongtingiaodich|thoigiangd|ip|KEY"
        );
        assert_eq!(
            pp.message(PlatformMessage::CallbackReply).data(get),
            "maloi|madoitac|mathamchieu|thoigiangd|KEY"
        );
        assert_eq!(
            pp.message(PlatformMessage::InitAnswer).data(get),
            "maloi|mathamchieu|urlthanhtoan|KEY"
        );
        assert_eq!(
            pp.message(PlatformMessage::Query).data(get),
            "loaibantin|phienban|madoitac|mathamchieu|thoigiangd|KEY"
        );
        assert_eq!(
            pp.message(PlatformMessage::QueryAnswer).data(get),
            "maloi|madoitac|mathamchieu|sotien|trangthai|magiaodich|KEY"
        );
    }
}
