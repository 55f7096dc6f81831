//! [`MySignSigner`]: the [`RemoteSigner`] of a MySign service.

use std::path::Path;

use async_trait::async_trait;

use super::session::Sessions;
use super::settings::{resolve, Settings};
use super::{client, request, response};
use crate::config::SignerSection;
use crate::connectors::officials::{b64, SettingsError};
use crate::connectors::signer::{
    CancelOutcome, HashRequest, PollPolicy, RemoteSigner, SignStatus, SignerError, SignerId,
    SignerService, Submitted, Transaction, VerifyAgainst,
};
use crate::signing::remote::{DigestAlgorithm, RsaPadding, SignerCertificate};

/// A MySign service.
pub struct MySignSigner {
    s: Settings,
    sessions: Sessions,
}

impl MySignSigner {
    pub fn new(name: &str, section: &SignerSection, base: &Path) -> Result<Self, SettingsError> {
        Ok(MySignSigner {
            s: resolve(name, section, base)?,
            sessions: Sessions::default(),
        })
    }

    /// Logins made so far (all officials).
    pub fn logins(&self) -> u64 {
        self.sessions.logins()
    }

    fn credential<'a>(
        &self,
        o: &'a crate::connectors::officials::OfficialEntry,
    ) -> Result<&'a str, SignerError> {
        o.credential_id.as_deref().ok_or_else(|| {
            SignerError::Input(format!(
                "official `{}` has no credential_id in signers.{}",
                o.user_id, self.s.name
            ))
        })
    }
}

#[async_trait]
impl RemoteSigner for MySignSigner {
    fn name(&self) -> &str {
        &self.s.name
    }

    fn service(&self) -> SignerService {
        SignerService::MySign
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

    fn transaction_for(&self, _req: &HashRequest) -> Option<Transaction> {
        None
    }

    async fn certificate(&self, signer: &SignerId) -> Result<SignerCertificate, SignerError> {
        let o = self.s.roster.official(signer)?.clone();
        let cred = self.credential(&o)?;
        let body = request::certificates(&self.s, &o.user_id, cred);
        let reply = client::call(
            &self.s,
            &self.sessions,
            "certificates/info",
            &o.user_id,
            request::CERTIFICATES,
            &body,
        )
        .await?;
        let certs = response::certificates(&reply, cred)?;
        let ders = certs
            .iter()
            .map(|c| b64("certificates/info", c))
            .collect::<Result<Vec<_>, _>>()?;
        let cert =
            SignerCertificate::from_der(&ders[0], &ders[1..]).map_err(SignerError::Certificate)?;
        self.s.roster.accept_certificate(&o, cert)
    }

    async fn submit(&self, req: &HashRequest) -> Result<Submitted, SignerError> {
        let o = self.s.roster.check_request(req)?.clone();
        if let Some(tx) = self.s.roster.remembered(&req.request_id) {
            return Ok(Submitted::Waiting(tx));
        }
        let cred = self.credential(&o)?.to_string();
        let cert = match self.s.roster.cached(&o.user_id) {
            Some(c) => c,
            None => self.certificate(&req.signer).await?,
        };
        self.s.roster.check_key(&o, &cert, req)?;
        let algo = request::sign_algo(cert.key(), req, self.s.roster.padding() == RsaPadding::Pss);
        let body = request::sign_hash(&self.s, &cred, req, algo);
        let reply = client::call(
            &self.s,
            &self.sessions,
            "signHash",
            &o.user_id,
            request::SIGN_HASH,
            &body,
        )
        .await
        .map_err(in_doubt)?;
        let tx = Transaction(response::transaction(&reply).map_err(in_doubt)?);
        self.s.roster.remember(&req.request_id, &tx);
        Ok(Submitted::Waiting(tx))
    }

    async fn status(&self, tx: &Transaction, req: &HashRequest) -> Result<SignStatus, SignerError> {
        let o = self.s.roster.official(&req.signer)?.clone();
        let reply = client::call(
            &self.s,
            &self.sessions,
            "requests/status",
            &o.user_id,
            request::STATUS,
            &request::status(&tx.0),
        )
        .await?;
        response::status(&self.s, &reply)
    }

    /// Viettel MySign has no cancel operation in `shared/CONTRACTS.md` §4: nothing is called.
    async fn cancel(
        &self,
        _tx: Option<&Transaction>,
        _req: &HashRequest,
    ) -> Result<CancelOutcome, SignerError> {
        Ok(CancelOutcome::NotSupported)
    }
}

/// A signHash that may have reached the phone, its answer lost: in doubt, not retried.
fn in_doubt(e: SignerError) -> SignerError {
    if e.may_have_arrived() {
        SignerError::InDoubt {
            detail: e.to_string(),
        }
    } else {
        e
    }
}
