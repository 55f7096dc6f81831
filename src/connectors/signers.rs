//! Building the remote signing services of the configuration (`[signers.NAME]`): one
//! [`RemoteSigner`] per section, kept by name. Not route destinations: their kinds are
//! [`crate::config::SIGNER_SERVICES`], and this file has an arm for each (its test walks the
//! list, so a service cannot be accepted by the configuration and unknown here).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::csc::CscSigner;
use super::mysign::MySignSigner;
use super::officials::SettingsError;
use super::signer::RemoteSigner;
use super::smartca::SmartCaSigner;
use crate::config::{Loaded, SignerSection};

/// Why a signer cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "signers.{0}.service: unknown service `{1}` ({list})",
        list = crate::config::SIGNER_SERVICES.join(", ")
    )]
    UnknownService(String, String),
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// Build the signer a section names.
pub fn build(
    name: &str,
    s: &SignerSection,
    base: &Path,
) -> Result<Arc<dyn RemoteSigner>, BuildError> {
    Ok(match s.service.as_str() {
        "smartca" => Arc::new(SmartCaSigner::new(name, s, base)?),
        "mysign" => Arc::new(MySignSigner::new(name, s, base)?),
        "csc" => Arc::new(CscSigner::new(name, s, base)?),
        other => return Err(BuildError::UnknownService(name.into(), other.into())),
    })
}

/// Every configured signer, by name, built once at start.
#[derive(Default, Clone)]
pub struct Signers {
    by_name: BTreeMap<String, Arc<dyn RemoteSigner>>,
}

impl Signers {
    pub fn load(l: &Loaded) -> Result<Signers, BuildError> {
        let mut by_name = BTreeMap::new();
        for (name, s) in &l.config.signers {
            by_name.insert(name.clone(), build(name, s, &l.base)?);
        }
        Ok(Signers { by_name })
    }

    /// Add (or replace) one signer under its name (tests, tools).
    pub fn with(mut self, signer: Arc<dyn RemoteSigner>) -> Self {
        self.by_name.insert(signer.name().to_owned(), signer);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn RemoteSigner>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(service: &str) -> SignerSection {
        let creds = match service {
            "smartca" => "sp_id = \"sp\"\nsp_password = { env = \"PATH\" }\n",
            "mysign" => {
                "client_id = \"c\"\nclient_secret = { env = \"PATH\" }\nprofile_id = \"p\"\n"
            }
            _ => "client_id = \"c\"\nclient_secret = { env = \"PATH\" }\n",
        };
        let cred = if service == "smartca" {
            ""
        } else {
            "credential_id = \"cred-rsa\"\n"
        };
        toml::from_str(&format!(
            "service = \"{service}\"\nurl = \"http://127.0.0.1:9\"\ntrust_anchors = \"certs-example/chain.pem\"\n{creds}[[officials]]\nuser_id = \"official-rsa\"\nserial = \"5000\"\n{cred}"
        ))
        .expect("a minimal signer section")
    }

    /// Every service the configuration accepts is built here, and no other.
    #[test]
    fn every_configured_service_is_built_and_no_other() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR"));
        for svc in crate::config::SIGNER_SERVICES {
            let s = build("a", &section(svc), base).unwrap_or_else(|e| panic!("{svc}: {e}"));
            assert_eq!(s.service().as_str(), *svc);
        }
        let mut s = section("smartca");
        s.service = "vnpt".into();
        assert!(matches!(
            build("a", &s, base),
            Err(BuildError::UnknownService(..))
        ));
    }
}
