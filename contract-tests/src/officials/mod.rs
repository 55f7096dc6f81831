//! What the three remote-signing sandboxes (SmartCA, MySign, CSC) share: the example
//! officials with their keys and certificates, the "phone" on which an official confirms,
//! rejects or ignores a request, the switchable faults and the records tests read.
//!
//! # Invariants
//!
//! - **Officials are the example PKI's** (`certs-example/officials/`, issued by the example
//!   intermediate CA): a signature from the sandbox verifies with OpenSSL against
//!   `certs-example/chain.pem` exactly as a real service's would against its CA.
//! - **Only a digest is ever signed**: the sandbox signs the bytes it was given as a digest
//!   (prehashed: RSA PKCS#1 v1.5 or PSS, ECDSA), so a client that sent a document instead of
//!   its digest gets a refusal (wrong length) or a useless signature, never a good one.
//! - **One request, one push to the phone**: a request id (SmartCA's `transaction_id`, an
//!   identical MySign / CSC request carrying the same `clientData`) already pushed is not
//!   pushed again; [`SignRecords::pushes`] is what the official's phone received.
//! - **Time**: an official confirms (or rejects) `confirm_after` after the push; a request not
//!   answered within `lifetime` expires. Judged when the request is read, so a test waits in
//!   real time, bounded by these two settings.
//! - **Deterministic under a seed**: identifiers and random faults come from one seeded RNG.
//! - **Every body is recorded** ([`SignRecords::received`]): tests assert that a digest, never
//!   a document, was sent.
//!
//! # Files
//! - `keys.rs`: [`Official`], [`OfficialSpec`], [`default_officials`], loading and signing.
//! - `phone.rs`: [`Phone`], one official's view of a request and its [`PhoneState`].
//! - `faults.rs`: [`SignFaults`] and where each applies.
//! - `records.rs`: [`SignRecords`].
//! - `http.rs`: strict JSON reading shared by the sandboxes' handlers, and their control
//!   routes (records, faults).

mod faults;
pub(crate) mod http;
mod keys;
mod phone;
mod records;

pub use faults::{FaultStep, SignFaults};
pub use keys::{
    certs_example, default_officials, Behaviour, DigestAlg, Official, OfficialError, OfficialSpec,
};
pub use phone::{Phone, PhoneState, Push};
pub use records::{Received, SignRecords};

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What every signing sandbox holds behind its lock.
pub struct Core {
    pub officials: Vec<Official>,
    pub phone: Phone,
    pub faults: SignFaults,
    pub records: SignRecords,
    rng: StdRng,
}

impl Core {
    pub fn new(
        specs: &[OfficialSpec],
        confirm_after: Duration,
        lifetime: Duration,
        seed: u64,
    ) -> Result<Core, OfficialError> {
        let officials = specs
            .iter()
            .map(Official::load)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Core {
            officials,
            phone: Phone::new(confirm_after, lifetime),
            faults: SignFaults::default(),
            records: SignRecords::default(),
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// An official by user id.
    pub fn official(&self, user_id: &str) -> Option<&Official> {
        self.officials.iter().find(|o| o.user_id == user_id)
    }

    /// An official by credential id.
    pub fn by_credential(&self, credential_id: &str) -> Option<&Official> {
        self.officials
            .iter()
            .find(|o| o.credential_id == credential_id)
    }

    /// A fresh identifier (`prefix` + 16 hex digits), from the seeded RNG.
    pub fn next_id(&mut self, prefix: &str) -> String {
        format!("{prefix}{:016x}", self.rng.random::<u64>())
    }

    /// Whether a random 5xx hits this call (seeded).
    pub fn roll_server_error(&mut self) -> bool {
        let rate = self.faults.server_error_rate;
        rate > 0.0 && self.rng.random::<f64>() < rate
    }

    /// The official whose certificate the certificate calls answer for `o`: `o`, or another
    /// one under the certificate faults.
    pub fn certificate_of<'a>(&'a self, o: &'a Official) -> &'a Official {
        let swap = if self.faults.expired_certificate {
            self.officials.iter().find(|x| x.file == "official-expired")
        } else if self.faults.other_certificate {
            self.officials.iter().find(|x| x.file == "official-other")
        } else {
            None
        };
        swap.unwrap_or(o)
    }

    /// Read a request's state on the phone, signing on confirmation (faults applied then).
    pub fn read(&mut self, id: &str) -> Option<PhoneState> {
        let now = std::time::Instant::now();
        let faults = self.faults.clone();
        let officials = &self.officials;
        self.phone.read(id, now, |push| {
            let o = officials.iter().find(|o| o.user_id == push.official)?;
            let sigs = push
                .digests
                .iter()
                .map(|d| {
                    let mut d = d.clone();
                    if faults.other_digest {
                        d[0] ^= 0x5a;
                    }
                    let mut s = o.sign_digest(&d, push.alg, push.pss).ok()?;
                    if faults.wrong_signature {
                        let last = s.len() - 1;
                        s[last] ^= 0x01;
                        s[0] ^= 0x80;
                    }
                    Some(s)
                })
                .collect::<Option<Vec<_>>>()?;
            Some(sigs)
        })
    }
}
