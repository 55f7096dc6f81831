//! [`SmartCaSigner`]: the [`RemoteSigner`] of a SmartCA service.

use std::path::Path;

use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::settings::{resolve, Settings};
use super::{request, response};
use crate::config::SignerSection;
use crate::connectors::officials::{b64, SettingsError};
use crate::connectors::signer::{
    CancelOutcome, HashRequest, PollPolicy, RemoteSigner, SignStatus, SignerError, SignerId,
    SignerService, Submitted, Transaction, VerifyAgainst,
};
use crate::signing::remote::{DigestAlgorithm, SignerCertificate, SignerPin};
use crate::transport::stack::Auth;

/// A SmartCA service.
pub struct SmartCaSigner {
    s: Settings,
}

impl SmartCaSigner {
    pub fn new(name: &str, section: &SignerSection, base: &Path) -> Result<Self, SettingsError> {
        Ok(SmartCaSigner {
            s: resolve(name, section, base)?,
        })
    }

    async fn post(
        &self,
        step: &'static str,
        path: &str,
        body: &Value,
    ) -> Result<crate::transport::stack::Reply, SignerError> {
        let url = format!("{}{path}", self.s.url);
        self.s
            .link
            .post(step, &url, body, Auth::None, &["sp_password"])
            .await
    }

    /// One sign call for transaction `tx`.
    async fn sign_once(
        &self,
        req: &HashRequest,
        serial: &str,
        tx: &str,
    ) -> Result<(), SignerError> {
        let body = request::sign(&self.s, req, serial, tx, &request::time_stamp());
        let reply = self.post("sign", request::SIGN, &body).await?;
        response::signed_request(&reply)
    }
}

#[async_trait]
impl RemoteSigner for SmartCaSigner {
    fn name(&self) -> &str {
        &self.s.name
    }

    fn service(&self) -> SignerService {
        SignerService::SmartCa
    }

    fn poll_policy(&self) -> PollPolicy {
        self.s.link.policy
    }

    fn verify_against(&self, signer: &SignerId) -> Result<VerifyAgainst<'_>, SignerError> {
        self.s.roster.verify_against(signer)
    }

    fn digests(&self) -> &[DigestAlgorithm] {
        self.s.roster.digests()
    }

    fn transaction_for(&self, req: &HashRequest) -> Option<Transaction> {
        let mut h = Sha256::new();
        h.update(self.s.name.as_bytes());
        h.update([0]);
        h.update(req.request_id.as_bytes());
        Some(Transaction(format!(
            "gw-{}",
            &hex::encode(h.finalize())[..32]
        )))
    }

    async fn certificate(&self, signer: &SignerId) -> Result<SignerCertificate, SignerError> {
        let o = self.s.roster.official(signer)?.clone();
        let serial = match &o.pin {
            SignerPin::Serial(sr) => Some(sr.as_str()),
            SignerPin::Subject(_) => None,
        };
        let tx = format!("gw-cert-{}", uuid::Uuid::now_v7().simple());
        let body = request::certificate(&self.s, &o.user_id, serial, &tx);
        let reply = self
            .post("get_certificate", request::CERTIFICATE, &body)
            .await?;
        let list = response::certificates(&reply)?;
        let chosen = list
            .iter()
            .find(
                |c| match (&o.pin, c.get("serial_number").and_then(Value::as_str)) {
                    (SignerPin::Serial(want), Some(got)) => {
                        crate::signing::remote::normalize_serial(got) == *want
                    }
                    _ => true,
                },
            )
            .or_else(|| list.first())
            .ok_or(SignerError::Answer {
                step: "get_certificate",
                detail: "no certificate for this user".into(),
            })?;
        let leaf = b64(
            "get_certificate",
            chosen
                .get("cert_data")
                .and_then(Value::as_str)
                .unwrap_or(""),
        )?;
        let chain = chosen
            .get("chain_data")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|c| b64("get_certificate", c))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let cert = SignerCertificate::from_der(&leaf, &chain).map_err(SignerError::Certificate)?;
        self.s.roster.accept_certificate(&o, cert)
    }

    async fn submit(&self, req: &HashRequest) -> Result<Submitted, SignerError> {
        let o = self.s.roster.check_request(req)?.clone();
        if let Some(tx) = self.s.roster.remembered(&req.request_id) {
            return Ok(Submitted::Waiting(tx));
        }
        let cert = match self.s.roster.cached(&o.user_id) {
            Some(c) => c,
            None => self.certificate(&req.signer).await?,
        };
        self.s.roster.check_key(&o, &cert, req)?;
        let tx = self
            .transaction_for(req)
            .expect("SmartCA names its transactions");
        let serial = cert.serial();
        match self.sign_once(req, &serial, &tx.0).await {
            Ok(()) => {}
            Err(e) if e.may_have_arrived() => {
                // The answer was lost: ask before sending again.
                match self.status(&tx, req).await {
                    Ok(SignStatus::NotFound) => {
                        tracing::info!(signer = %self.s.name, "SmartCA has no trace of the lost sign call: sending it again");
                        self.sign_once(req, &serial, &tx.0).await?;
                    }
                    Ok(_) => {}
                    Err(q) => {
                        return Err(SignerError::InDoubt {
                            detail: format!("{e}; the status query failed too: {q}"),
                        })
                    }
                }
            }
            Err(e) => return Err(e),
        }
        self.s.roster.remember(&req.request_id, &tx);
        Ok(Submitted::Waiting(tx))
    }

    async fn status(
        &self,
        tx: &Transaction,
        _req: &HashRequest,
    ) -> Result<SignStatus, SignerError> {
        let body = request::status(&self.s);
        let reply = self
            .post("status", &request::status_path(&tx.0), &body)
            .await?;
        response::status(&self.s, &reply)
    }

    /// VNPT SmartCA has no cancel operation in `shared/CONTRACTS.md` §4: nothing is called.
    async fn cancel(
        &self,
        _tx: Option<&Transaction>,
        _req: &HashRequest,
    ) -> Result<CancelOutcome, SignerError> {
        Ok(CancelOutcome::NotSupported)
    }
}
