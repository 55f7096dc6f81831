//! The CSC v2 operations and their bodies, with the specification's field names.

use serde_json::{json, Value};

use crate::connectors::officials::b64_encode;
use crate::connectors::signer::HashRequest;
use crate::signing::remote::KeyAlgorithm;

pub(super) const LIST: &str = "credentials/list";
pub(super) const INFO: &str = "credentials/info";
pub(super) const AUTHORIZE: &str = "credentials/authorize";
pub(super) const SIGN_HASH: &str = "signatures/signHash";

pub(super) fn list(user_id: &str) -> Value {
    json!({"userID": user_id})
}

pub(super) fn info(credential: &str) -> Value {
    json!({"credentialID": credential, "certificates": "chain", "certInfo": true, "authInfo": true})
}

pub(super) fn authorize(credential: &str, req: &HashRequest) -> Value {
    json!({
        "credentialID": credential,
        "numSignatures": 1,
        "hashes": [b64_encode(&req.digest)],
        "hashAlgorithmOID": req.algorithm.oid(),
    })
}

/// The `signAlgo` OID for a key and digest (RSASSA-PSS when configured).
pub(super) fn sign_algo(key: KeyAlgorithm, req: &HashRequest, pss: bool) -> &'static str {
    use crate::signing::remote::DigestAlgorithm as D;
    match (key, req.algorithm) {
        (KeyAlgorithm::Rsa { .. }, _) if pss => "1.2.840.113549.1.1.10",
        (KeyAlgorithm::Rsa { .. }, D::Sha256) => "1.2.840.113549.1.1.11",
        (KeyAlgorithm::Rsa { .. }, D::Sha384) => "1.2.840.113549.1.1.12",
        (KeyAlgorithm::Rsa { .. }, D::Sha512) => "1.2.840.113549.1.1.13",
        (KeyAlgorithm::Ec { .. }, D::Sha256) => "1.2.840.10045.4.3.2",
        (KeyAlgorithm::Ec { .. }, D::Sha384) => "1.2.840.10045.4.3.3",
        (KeyAlgorithm::Ec { .. }, D::Sha512) => "1.2.840.10045.4.3.4",
    }
}

pub(super) fn sign_hash(
    credential: &str,
    sad: &str,
    req: &HashRequest,
    sign_algo: &str,
    synchronous: bool,
) -> Value {
    json!({
        "credentialID": credential,
        "SAD": sad,
        "hashes": [b64_encode(&req.digest)],
        "hashAlgorithmOID": req.algorithm.oid(),
        "signAlgo": sign_algo,
        "operationMode": if synchronous { "S" } else { "A" },
        "clientData": req.request_id,
    })
}

pub(super) fn polling(response_id: &str) -> Value {
    json!({"responseID": response_id})
}
