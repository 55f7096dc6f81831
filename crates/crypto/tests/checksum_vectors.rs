//! Checksum schemes checked against values computed independently by the `openssl dgst` CLI.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use gw_crypto::checksum::{MoMo, PayGov, PaymentPlatform, VnPay};
use gw_crypto::keys::Secret;

/// `openssl dgst -<md> [-hmac key]` over `data`; returns lower-case hex.
fn openssl_dgst(md: &str, hmac_key: Option<&str>, data: &str) -> String {
    let mut cmd = Command::new("openssl");
    cmd.arg("dgst").arg(format!("-{md}"));
    if let Some(k) = hmac_key {
        cmd.arg("-hmac").arg(k);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(data.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn vnpay_matches_openssl_hmac_sha512() {
    if !common::openssl_cli() {
        return;
    }
    let secret = "DEMOSECRETKEY0123456789ABCDEFGHIJ";
    let params: Vec<(String, String)> = [
        ("vnp_Version", "2.1.0"),
        ("vnp_Command", "pay"),
        ("vnp_TmnCode", "DEMO0001"),
        ("vnp_Amount", "1806000"),
        ("vnp_CreateDate", "20260101103111"),
        ("vnp_CurrCode", "VND"),
        ("vnp_IpAddr", "127.0.0.1"),
        ("vnp_Locale", "vn"),
        ("vnp_OrderInfo", "Nop phi ho so H00.01-260101-0001"),
        ("vnp_OrderType", "other"),
        (
            "vnp_ReturnUrl",
            "https://dvc.example.gov.vn/vnpay/return?a=1&b=2",
        ),
        ("vnp_TxnRef", "5"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let data = VnPay::hash_data(&params);
    assert_eq!(
        data,
        "vnp_Amount=1806000&vnp_Command=pay&vnp_CreateDate=20260101103111&vnp_CurrCode=VND&vnp_IpAddr=127.0.0.1&vnp_Locale=vn&vnp_OrderInfo=Nop+phi+ho+so+H00.01-260101-0001&vnp_OrderType=other&vnp_ReturnUrl=https%3A%2F%2Fdvc.example.gov.vn%2Fvnpay%2Freturn%3Fa%3D1%26b%3D2&vnp_TmnCode=DEMO0001&vnp_TxnRef=5&vnp_Version=2.1.0"
    );
    let ours = VnPay::new(Secret::new(secret)).sign(&params).unwrap();
    assert_eq!(ours, openssl_dgst("sha512", Some(secret), &data));
}

#[test]
fn momo_matches_openssl_hmac_sha256() {
    if !common::openssl_cli() {
        return;
    }
    let secret = "K951B6PE1waDMi640xX08PD3vg6EkVlz";
    let fields = [
        ("accessKey", "F8BBA842ECF85"),
        ("amount", "50000"),
        ("extraData", ""),
        ("ipnUrl", "https://gw.example/momo/ipn"),
        ("orderId", "H00-260101-0001"),
        ("orderInfo", "Nộp phí hồ sơ"),
        ("partnerCode", "MOMO"),
        ("redirectUrl", "https://dvc.example/momo/return"),
        ("requestId", "H00-260101-0001-1"),
        ("requestType", "captureWallet"),
    ];
    let data = MoMo::raw_data(&fields);
    assert!(data.starts_with("accessKey=F8BBA842ECF85&amount=50000&extraData=&ipnUrl="));
    let ours = MoMo::new(Secret::new(secret)).sign(&fields).unwrap();
    assert_eq!(ours, openssl_dgst("sha256", Some(secret), &data));
}

#[test]
fn payment_platform_and_paygov_match_openssl_sha256() {
    if !common::openssl_cli() {
        return;
    }
    let pp = PaymentPlatform::new(Secret::new("khoa-bi-mat"));
    let fields = [
        "000.00.00.H00",
        "H00-260101-0001",
        "150000",
        "20260101120000",
    ];
    assert_eq!(
        pp.ma_xac_thuc(&fields).unwrap(),
        openssl_dgst(
            "sha256",
            None,
            "000.00.00.H00|H00-260101-0001|150000|20260101120000|khoa-bi-mat"
        )
    );
    let pg = PayGov::new(Secret::new("sk"), "ak", "PARTNER");
    assert_eq!(
        pg.checksum("ORD1", "REQ1", "150000").unwrap(),
        openssl_dgst("sha256", None, "skakPARTNERORD1REQ1150000")
    );
}
