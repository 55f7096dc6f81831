//! [`CscSigner`]: the [`RemoteSigner`] of a CSC API v2 service.

use std::path::Path;

use async_trait::async_trait;

use super::settings::{resolve, Settings};
use super::{client, request, response, session};
use crate::config::SignerSection;
use crate::connectors::officials::{b64, OfficialEntry, SettingsError};
use crate::connectors::signer::{
    CancelOutcome, HashRequest, PollPolicy, RemoteSigner, SignStatus, SignerError, SignerId,
    SignerService, Submitted, Transaction, VerifyAgainst,
};
use crate::signing::remote::{DigestAlgorithm, RsaPadding, SignerCertificate};

/// A CSC API v2 service.
pub struct CscSigner {
    s: Settings,
}

impl CscSigner {
    pub fn new(name: &str, section: &SignerSection, base: &Path) -> Result<Self, SettingsError> {
        Ok(CscSigner {
            s: resolve(name, section, base)?,
        })
    }

    /// Token fetches so far.
    pub fn token_fetches(&self) -> u64 {
        session::fetches(&self.s)
    }

    /// The official's credential: configured, or the first `credentials/list` gives.
    async fn credential(&self, o: &OfficialEntry) -> Result<String, SignerError> {
        if let Some(c) = &o.credential_id {
            return Ok(c.clone());
        }
        let r = client::call(
            &self.s,
            "credentials/list",
            request::LIST,
            &request::list(&o.user_id),
        )
        .await?;
        let v = response::ok("credentials/list", &r)?;
        response::first_credential(&v).ok_or(SignerError::Answer {
            step: "credentials/list",
            detail: format!("official `{}` has no credential at the service", o.user_id),
        })
    }
}

#[async_trait]
impl RemoteSigner for CscSigner {
    fn name(&self) -> &str {
        &self.s.name
    }

    fn service(&self) -> SignerService {
        SignerService::Csc
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
        let cred = self.credential(&o).await?;
        let r = client::call(
            &self.s,
            "credentials/info",
            request::INFO,
            &request::info(&cred),
        )
        .await?;
        let v = response::ok("credentials/info", &r)?;
        let ders = response::certificates(&v)?
            .iter()
            .map(|c| b64("credentials/info", c))
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
        let cert = match self.s.roster.cached(&o.user_id) {
            Some(c) => c,
            None => self.certificate(&req.signer).await?,
        };
        self.s.roster.check_key(&o, &cert, req)?;
        let cred = self.credential(&o).await?;
        let r = client::call(
            &self.s,
            "credentials/authorize",
            request::AUTHORIZE,
            &request::authorize(&cred, req),
        )
        .await?;
        let sad = response::sad(&response::ok("credentials/authorize", &r)?)?;
        let algo = request::sign_algo(cert.key(), req, self.s.roster.padding() == RsaPadding::Pss);
        let body = request::sign_hash(&cred, &sad, req, algo, self.s.synchronous);
        let r = client::call(&self.s, "signatures/signHash", request::SIGN_HASH, &body)
            .await
            .map_err(in_doubt)?;
        if self.s.synchronous {
            return match response::outcome(&self.s, "signatures/signHash", &r).map_err(in_doubt)? {
                SignStatus::Signed(v) => Ok(Submitted::Signed(v)),
                SignStatus::Rejected(why) => Ok(Submitted::Rejected(why)),
                SignStatus::Expired => Ok(Submitted::Expired),
                other => Err(SignerError::Answer {
                    step: "signatures/signHash",
                    detail: format!("a synchronous signHash answered {other:?}"),
                }),
            };
        }
        let v = response::ok("signatures/signHash", &r).map_err(in_doubt)?;
        let tx = Transaction(response::response_id(&v).map_err(in_doubt)?);
        self.s.roster.remember(&req.request_id, &tx);
        Ok(Submitted::Waiting(tx))
    }

    async fn status(
        &self,
        tx: &Transaction,
        _req: &HashRequest,
    ) -> Result<SignStatus, SignerError> {
        let path = self.s.polling_path.clone();
        let r = client::call(
            &self.s,
            "signatures/signPolling",
            &path,
            &request::polling(&tx.0),
        )
        .await?;
        response::outcome(&self.s, "signatures/signPolling", &r)
    }

    /// CSC API v2 has no cancel operation in `shared/CONTRACTS.md` §4: nothing is called.
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
