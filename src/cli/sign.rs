//! `gateway sign` and `gateway verify`: sign or check a file the way an adapter or a source
//! would, for integrators testing against a party.
//!
//! - The file decides the format: XML (first character `<`) → XML-DSig enveloped signature;
//!   JSON → JWS compact, or with `--detached` an RFC 7797 detached JWS (`b64:false`) over the
//!   file's exact bytes.
//! - Keys come from a profile (`--profile NAME`, with `--config FILE`) or from files given
//!   directly (`--key KEY.pem --cert CERT.pem` to sign; `--cert` (pinned) and/or `--trust
//!   CA.pem` (chain) to verify). A profile's `algorithm`, `key_id` and `embed_chain` apply.
//! - The signed document goes to stdout (or `--out`); what was signed or verified, by which
//!   certificate (subject, serial, SHA-256 fingerprint, days to expiry), goes to stderr, and
//!   on failure exactly why (the gw-crypto error).
//! - `--format cms|xml|pdf` makes the signed formats the gateway assembles around a remote
//!   signature (`signing::assemble`): the same prepare/finish path, the local key standing in
//!   for the signing service (it signs only the digest). Check the result with OpenSSL, xmlsec1
//!   or pyHanko (README, "Signed formats").
//! - Exit codes: 0 done, 1 the signature did not verify (or signing the document failed),
//!   2 usage or configuration errors (unreadable files, unknown profile, keys that do not load).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use gw_crypto::jws::{self, JwsAlgorithm, JwsOptions, JwsTrust, KeyHint};
use gw_crypto::keys::VerifyingKey;
use gw_crypto::xmldsig::{self, SignOptions, SignerTrust, VerifyOptions};
use openssl::x509::X509;

use crate::signing::assemble::{self, DigestAlgorithm, Format};
use crate::signing::{describe_certificate, KeyMaterial, Profiles};

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

fn parse_digest(s: &str) -> Result<DigestAlgorithm, String> {
    s.parse()
}

/// Where keys come from.
#[derive(Args, Debug, Clone)]
pub struct KeySource {
    /// A `[signing.NAME]` profile of the configuration.
    #[arg(long, short)]
    pub profile: Option<String>,
    /// The configuration file holding the profile.
    #[arg(long, short, env = "GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// PEM private key (instead of a profile).
    #[arg(long, conflicts_with = "profile")]
    pub key: Option<PathBuf>,
    /// PEM certificate: of `--key` when signing; the pinned signer when verifying.
    #[arg(long, conflicts_with = "profile")]
    pub cert: Option<PathBuf>,
}

/// `gateway sign`.
#[derive(Args, Debug, Clone)]
pub struct SignArgs {
    #[command(flatten)]
    pub keys: KeySource,
    /// JSON: an RFC 7797 detached JWS (b64:false) instead of a compact one.
    #[arg(long)]
    pub detached: bool,
    /// Make a signed format the way a remote signature is assembled (prepare, sign the digest
    /// with the key, finish): `cms` (detached CMS, DER, for any file), `xml` (enveloped
    /// XML-DSig), `pdf` (PAdES B-B, incremental update).
    #[arg(long, value_parser = parse_format, conflicts_with = "detached")]
    pub format: Option<Format>,
    /// With --format: the digest (sha256, sha384, sha512).
    #[arg(long, value_parser = parse_digest, default_value = "sha256", requires = "format")]
    pub digest: DigestAlgorithm,
    /// With --format pdf: the signature's /Reason (refused for cms and xml).
    #[arg(long, requires = "format")]
    pub reason: Option<String>,
    /// Write the result here instead of stdout.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// The XML or JSON file to sign.
    pub file: PathBuf,
}

/// `gateway verify`.
#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub keys: KeySource,
    /// PEM trust anchors the signer certificate must chain to (instead of a profile).
    #[arg(long, conflicts_with = "profile")]
    pub trust: Option<PathBuf>,
    /// FILE is the detached payload; this is the detached JWS (the header value), or a file
    /// holding it.
    #[arg(long)]
    pub detached: Option<String>,
    /// Signed XML, a compact JWS, or (with --detached) the payload.
    pub file: PathBuf,
}

/// A usage or configuration error (exit 2) or a failed operation (exit 1).
pub(super) enum Failure {
    Usage(String),
    Failed(String),
}

impl Failure {
    pub(super) fn report(self, what: &str) -> ExitCode {
        match self {
            Failure::Usage(m) => {
                eprintln!("{what}: {m}");
                ExitCode::from(2)
            }
            Failure::Failed(m) => {
                eprintln!("{what} FAILED: {m}");
                ExitCode::from(1)
            }
        }
    }
}

fn read(p: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(p).map_err(|e| Failure::Usage(format!("cannot read {}: {e}", p.display())))
}

/// The material of a profile, or of files given directly (also `gateway edxml build`).
pub(super) fn material(k: &KeySource, trust: Option<&Path>) -> Result<Arc<KeyMaterial>, Failure> {
    match &k.profile {
        Some(name) => {
            let cfg = k.config.as_ref().ok_or_else(|| {
                Failure::Usage("--profile needs --config FILE (or GATEWAY_CONFIG)".into())
            })?;
            let loaded = crate::config::load(cfg).map_err(|e| Failure::Usage(e.to_string()))?;
            if !loaded.config.signing.contains_key(name) {
                return Err(Failure::Usage(format!(
                    "{}: no profile [signing.{name}]",
                    loaded.origin
                )));
            }
            let profiles = Profiles::load(&loaded).map_err(|e| Failure::Usage(e.to_string()))?;
            Ok(profiles.material(name).expect("loaded above").clone())
        }
        None => {
            if k.key.is_some() && k.cert.is_none() {
                return Err(Failure::Usage("--key needs --cert".into()));
            }
            KeyMaterial::from_files(k.key.as_deref(), k.cert.as_deref(), trust)
                .map(Arc::new)
                .map_err(|e| Failure::Usage(e.to_string()))
        }
    }
}

fn is_xml(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes)
        .map(|s| {
            s.trim_start_matches('\u{feff}')
                .trim_start()
                .starts_with('<')
        })
        .unwrap_or(false)
}

fn print_cert(role: &str, cert: &X509) {
    let i = describe_certificate(cert);
    eprintln!("  {role}: {}", i.subject);
    eprintln!("    issuer: {}", i.issuer);
    eprintln!("    serial: {}", i.serial);
    eprintln!("    sha-256: {}", i.sha256);
    if i.days_to_expiry < 0 {
        eprintln!("    EXPIRED {} day(s) ago", -i.days_to_expiry);
    } else {
        eprintln!("    expires in {} day(s)", i.days_to_expiry);
    }
}

/// `gateway sign`.
pub fn sign(a: SignArgs) -> ExitCode {
    match sign_inner(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report("sign"),
    }
}

fn sign_inner(a: &SignArgs) -> Result<(), Failure> {
    if a.keys.profile.is_none() && a.keys.key.is_none() {
        return Err(Failure::Usage(
            "give --profile NAME (with --config) or --key KEY.pem --cert CERT.pem".into(),
        ));
    }
    let m = material(&a.keys, None)?;
    let key = m
        .key
        .clone()
        .ok_or_else(|| Failure::Usage(format!("profile {} has no key to sign with", m.profile)))?;
    let doc = read(&a.file)?;
    let (out, what) = if let Some(format) = a.format {
        assembled(format, &doc, &key, a)?
    } else if is_xml(&doc) {
        if a.detached {
            return Err(Failure::Usage(
                "--detached is for JSON; XML gets an enveloped signature".into(),
            ));
        }
        let xml = std::str::from_utf8(&doc).map_err(|e| Failure::Failed(e.to_string()))?;
        let opts = SignOptions {
            include_certificate: key.certificate().is_some(),
            include_chain: m.embed_chain,
            ..SignOptions::default()
        };
        let signed = xmldsig::sign_enveloped(xml, &key, &opts)
            .map_err(|e| Failure::Failed(e.to_string()))?;
        (
            signed.into_bytes(),
            "XML-DSig enveloped signature (exclusive C14N, whole document)".to_string(),
        )
    } else {
        serde_json::from_slice::<serde_json::Value>(&doc).map_err(|e| {
            Failure::Usage(format!("{} is neither XML nor JSON: {e}", a.file.display()))
        })?;
        // A profile's algorithm applies when it is a JWS one (an http-signature profile's is not).
        let algorithm = m.algorithm.as_deref().and_then(JwsAlgorithm::from_name);
        let opts = JwsOptions {
            algorithm,
            key_hint: if m.embed_chain {
                KeyHint::X5c
            } else {
                KeyHint::Kid
            },
            ..JwsOptions::default()
        };
        let token = if a.detached {
            // A source verifying detached JWS wants the signing time (`iat`) in the header.
            let mut opts = opts.clone();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            opts.extra.insert("iat".into(), now.into());
            jws::sign_detached(&doc, &key, &opts)
        } else {
            jws::sign_compact(&doc, &key, &opts)
        }
        .map_err(|e| Failure::Failed(e.to_string()))?;
        let hint = if m.embed_chain {
            "x5c".to_string()
        } else {
            format!("kid {}", key.id())
        };
        (
            token.into_bytes(),
            if a.detached {
                format!("detached JWS (RFC 7797, b64:false), {hint}")
            } else {
                format!("compact JWS, {hint}")
            },
        )
    };
    match &a.out {
        Some(p) => std::fs::write(p, &out)
            .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", p.display())))?,
        None => {
            use std::io::Write;
            let mut o = std::io::stdout();
            o.write_all(&out)
                .and_then(|_| o.flush())
                .map_err(|e| Failure::Usage(e.to_string()))?;
        }
    }
    eprintln!(
        "signed {} ({} bytes): {what}, key {} ({:?})",
        a.file.display(),
        doc.len(),
        key.id(),
        key.kind()
    );
    if let Some(c) = key.certificate() {
        print_cert("signer", c);
    }
    Ok(())
}

/// `--format`: the two phases of a remote signature, with the local key as the "service": it
/// signs only the prehashed digest, exactly as SmartCA, MySign or a CSC service would.
fn assembled(
    format: Format,
    doc: &[u8],
    key: &gw_crypto::keys::SigningKey,
    a: &SignArgs,
) -> Result<(Vec<u8>, String), Failure> {
    let cert = key
        .certificate()
        .ok_or_else(|| Failure::Usage("--format needs a certificate (--cert)".into()))?;
    let options = assemble::Options {
        digest: a.digest,
        reason: a.reason.clone(),
        ..assemble::Options::default()
    };
    let prepared = assemble::prepare(format, doc, cert, key.chain(), &options)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let value = sign_digest(key, prepared.digest_algorithm(), prepared.to_sign())
        .map_err(|e| Failure::Failed(format!("signing the digest: {e}")))?;
    let out =
        assemble::finish(&prepared, doc, &value).map_err(|e| Failure::Failed(e.to_string()))?;
    let what = match format {
        Format::Cms => "detached CMS SignedData (DER, CAdES-B attributes)",
        Format::Xml => "XML-DSig enveloped signature (exclusive C14N), assembled",
        Format::Pdf => "PAdES B-B (incremental update, ETSI.CAdES.detached)",
    };
    Ok((
        out,
        format!(
            "{what}; the key signed a {} digest of {} bytes",
            prepared.digest_algorithm(),
            prepared.to_sign().len()
        ),
    ))
}

/// A raw signature over a prehashed digest: RSA PKCS#1 v1.5 (DigestInfo) or ECDSA (DER).
fn sign_digest(
    key: &gw_crypto::keys::SigningKey,
    alg: DigestAlgorithm,
    digest: &[u8],
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let md = match alg {
        DigestAlgorithm::Sha256 => openssl::md::Md::sha256(),
        DigestAlgorithm::Sha384 => openssl::md::Md::sha384(),
        DigestAlgorithm::Sha512 => openssl::md::Md::sha512(),
    };
    let mut ctx = openssl::pkey_ctx::PkeyCtx::new(key.private_key())?;
    ctx.sign_init()?;
    if key.kind() == gw_crypto::keys::KeyKind::Rsa {
        ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1)?;
    }
    ctx.set_signature_md(md)?;
    let mut out = Vec::new();
    ctx.sign_to_vec(digest, &mut out)?;
    Ok(out)
}

/// `gateway verify`.
pub fn verify(a: VerifyArgs) -> ExitCode {
    match verify_inner(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report("verify"),
    }
}

/// The `kid` of a JWS header, without verifying anything (to pin `--cert` under that id).
fn kid_of(token: &str) -> Option<String> {
    use base64::Engine;
    let h = token.trim().split('.').next()?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    v.get("kid")?.as_str().map(str::to_string)
}

fn verify_inner(a: &VerifyArgs) -> Result<(), Failure> {
    if a.keys.profile.is_none() && a.keys.cert.is_none() && a.trust.is_none() {
        return Err(Failure::Usage(
            "give --profile NAME (with --config), --cert SIGNER.pem or --trust CA.pem".into(),
        ));
    }
    if a.keys.key.is_some() {
        return Err(Failure::Usage(
            "--key is for signing; verify with --cert (pinned) or --trust (chain)".into(),
        ));
    }
    // The certificate alone, pinned: read here so it can take the id the signature names.
    let pinned_cert = match (&a.keys.profile, &a.keys.cert) {
        (None, Some(c)) => Some(
            X509::stack_from_pem(&read(c)?)
                .ok()
                .and_then(|mut v| (!v.is_empty()).then(|| v.remove(0)))
                .ok_or_else(|| Failure::Usage(format!("{}: no PEM certificate", c.display())))?,
        ),
        _ => None,
    };
    let m = match &a.keys.profile {
        Some(_) => material(&a.keys, None)?,
        None => Arc::new(
            KeyMaterial::from_files(None, None, a.trust.as_deref())
                .map_err(|e| Failure::Usage(e.to_string()))?,
        ),
    };
    let doc = read(&a.file)?;
    let pinned_as = |id: &str| -> Result<Vec<VerifyingKey>, Failure> {
        match &pinned_cert {
            Some(c) => Ok(vec![VerifyingKey::from_certificate(id, c.clone())
                .map_err(|e| Failure::Usage(e.to_string()))?]),
            None => Ok(m.verifiers.clone()),
        }
    };
    if let Some(d) = &a.detached {
        let token = match std::fs::read_to_string(d) {
            Ok(t) => t.trim().to_string(),
            Err(_) => d.trim().to_string(),
        };
        return verify_jws(&token, Some(&doc), &m, &pinned_as, &a.file);
    }
    if is_xml(&doc) {
        let xml = std::str::from_utf8(&doc).map_err(|e| Failure::Failed(e.to_string()))?;
        let keys = pinned_as("pinned")?;
        let trust = match (&m.trust, keys.is_empty()) {
            (Some(t), true) => SignerTrust::Chain(t),
            (_, false) => SignerTrust::Pinned(&keys),
            (None, true) => {
                return Err(Failure::Usage(
                    "no key to verify with: the profile has no keys and no trust_anchors".into(),
                ))
            }
        };
        let v = xmldsig::verify_enveloped(xml, &VerifyOptions::new(trust))
            .map_err(|e| Failure::Failed(e.to_string()))?;
        // Pinned keys prove who signed; with anchors configured the certificate must chain too.
        if let (SignerTrust::Pinned(_), Some(t), Some(c)) = (trust, &m.trust, &v.signer) {
            t.verify(c, &[], gw_crypto::keys::Usage::Signing)
                .map_err(|e| Failure::Failed(format!("signer certificate: {e}")))?;
        }
        eprintln!(
            "verified {}: XML-DSig {:?}, reference {}, {} signed bytes",
            a.file.display(),
            v.algorithm,
            v.signed_id
                .as_deref()
                .map(|i| format!("#{i}"))
                .unwrap_or_else(|| "\"\" (whole document)".into()),
            v.signed_bytes.len()
        );
        if let Some(id) = &v.key_id {
            eprintln!("  pinned key: {id}");
        }
        if let Some(c) = &v.signer {
            print_cert("signer", c);
        }
        return Ok(());
    }
    let token = String::from_utf8(doc.clone())
        .map_err(|_| Failure::Usage(format!("{} is neither XML nor a JWS", a.file.display())))?;
    verify_jws(token.trim(), None, &m, &pinned_as, &a.file)
}

fn verify_jws(
    token: &str,
    payload: Option<&[u8]>,
    m: &KeyMaterial,
    pinned_as: &dyn Fn(&str) -> Result<Vec<VerifyingKey>, Failure>,
    file: &Path,
) -> Result<(), Failure> {
    let kid = kid_of(token);
    let keys = pinned_as(kid.as_deref().unwrap_or("pinned"))?;
    let v = match (&kid, &m.trust) {
        (None, Some(t)) => jws::verify(token, payload, JwsTrust::Chain(t)),
        _ => jws::verify(token, payload, JwsTrust::Keys(&keys)),
    }
    .map_err(|e| Failure::Failed(e.to_string()))?;
    let signer = v.signer.clone().or_else(|| {
        v.key_id
            .as_deref()
            .and_then(|id| keys.iter().find(|k| k.id == id))
            .and_then(|k| k.cert.clone())
    });
    if let (Some(_), Some(t), Some(c)) = (&kid, &m.trust, &signer) {
        t.verify(c, &[], gw_crypto::keys::Usage::Signing)
            .map_err(|e| Failure::Failed(format!("signer certificate: {e}")))?;
    }
    eprintln!(
        "verified {}: {} JWS {}, {} payload bytes{}",
        file.display(),
        if payload.is_some() {
            "detached"
        } else {
            "compact"
        },
        v.algorithm.name(),
        v.payload.len(),
        v.key_id
            .as_deref()
            .map(|k| format!(", kid {k}"))
            .unwrap_or_else(|| ", x5c".into())
    );
    if let Some(c) = &signer {
        print_cert("signer", c);
    }
    if payload.is_none() {
        use std::io::Write;
        let _ = std::io::stdout().write_all(&v.payload);
    }
    Ok(())
}
