//! `gateway edxml build|inspect|verify`: edXML envelopes of the document axis (QCVN 102:2016)
//! for integrators: make one from a JSON description and files, read one without dumping its
//! base64, check one's structure and signature.
//!
//! - `build DESCRIPTION.json [--attach [CONTENT_ID=]PATH ...] (--key KEY --cert CERT |
//!   --profile NAME --config FILE) --out FILE`: the description is `gw_edxml::model::Envelope`
//!   as JSON (README, `crates/edxml/samples/`); an attachment is matched to its manifest entry
//!   by `CONTENT_ID=` or else by the file's name (a ContentId or an AttachmentName). Signed
//!   with an enveloped XML-DSig (exclusive C14N) as edXMLHeader's last child; `--unsigned`
//!   writes it without a signature (for a remote signer, or a test of refusal).
//! - `inspect FILE`: header fields, trace, manifest with each attachment's size and SHA-256,
//!   status code, the signer the signature claims (not verified: `verify` does that).
//! - `verify FILE --trust ANCHORS.pem [--intermediates PEM]`: structure, then signature and
//!   signer chain.
//! - `history DOCUMENT_ID --config FILE`: the document's status history on the axis, from the
//!   store (the 01 the gateway acknowledged, every status message received), then its route
//!   trail (the document and the statuses sent, as `gateway trace` prints it).
//! - Exit codes: 0 done / valid, 1 refused (structure or signature, with the reason), 2 usage
//!   (unreadable files, bad description, keys that do not load). The envelope is streamed:
//!   memory stays a small multiple of the largest attachment.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use gw_crypto::keys::TrustStore;
use gw_edxml::model::{Envelope, Header, Organ};
use gw_edxml::read::{read, AttachmentInfo, Discard};
use gw_edxml::write::{AttachmentSource, Outgoing};

use crate::cli::sign::{material, Failure, KeySource};
use crate::signing::describe_certificate;

#[derive(Subcommand, Debug)]
pub enum EdxmlAction {
    /// Build (and sign) an envelope from a JSON description and attachment files.
    Build(BuildArgs),
    /// Show an envelope: header, trace, manifest with sizes and SHA-256, status, signer.
    Inspect {
        /// The edXML file.
        file: PathBuf,
    },
    /// A document's status history on the axis and its route trail (exit 1 if nothing known).
    History {
        /// The DocumentId (`OrganId,yyyy/MM/dd,Code`).
        document_id: String,
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Verify an envelope's structure and signature against trust anchors (exit 1 if not).
    Verify {
        /// The edXML file.
        file: PathBuf,
        /// PEM trust anchors the signer certificate must chain to.
        #[arg(long)]
        trust: PathBuf,
        /// PEM intermediate certificates, if the envelope's KeyInfo lacks them.
        #[arg(long)]
        intermediates: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The JSON description (header, trace, manifest).
    pub description: PathBuf,
    /// An attachment: `CONTENT_ID=PATH`, or `PATH` whose file name is a ContentId or an
    /// AttachmentName of the manifest. One per manifest entry.
    #[arg(long = "attach")]
    pub attach: Vec<String>,
    #[command(flatten)]
    pub keys: KeySource,
    /// Write the envelope without a signature.
    #[arg(long, conflicts_with_all = ["key", "cert", "profile"])]
    pub unsigned: bool,
    /// The output file.
    #[arg(long, short)]
    pub out: PathBuf,
}

pub async fn run(action: EdxmlAction) -> ExitCode {
    match action {
        EdxmlAction::History {
            document_id,
            config,
        } => match history(&document_id, &config).await {
            Ok(code) => code,
            Err(f) => f.report("edxml history"),
        },
        EdxmlAction::Build(a) => match build(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(f) => f.report("edxml build"),
        },
        EdxmlAction::Inspect { file } => match inspect(&file) {
            Ok(()) => ExitCode::SUCCESS,
            Err(f) => f.report("edxml inspect"),
        },
        EdxmlAction::Verify {
            file,
            trust,
            intermediates,
        } => match verify(&file, &trust, intermediates.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(f) => f.report("edxml verify"),
        },
    }
}

fn usage(m: impl std::fmt::Display) -> Failure {
    Failure::Usage(m.to_string())
}

fn failed(m: impl std::fmt::Display) -> Failure {
    Failure::Failed(m.to_string())
}

fn build(a: &BuildArgs) -> Result<(), Failure> {
    let text = std::fs::read(&a.description)
        .map_err(|e| usage(format!("cannot read {}: {e}", a.description.display())))?;
    let env: Envelope = serde_json::from_slice(&text)
        .map_err(|e| usage(format!("{}: {e}", a.description.display())))?;
    // Each --attach to its manifest entry.
    let mut pairs: Vec<(String, PathBuf)> = Vec::new();
    for spec in &a.attach {
        let (id, path) = match spec.split_once('=') {
            Some((id, p)) if env.manifest.iter().any(|m| m.content_id == id) => {
                (id.to_owned(), PathBuf::from(p))
            }
            _ => {
                let path = PathBuf::from(spec);
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let m = env
                    .manifest
                    .iter()
                    .find(|m| m.content_id == name || m.attachment_name == name)
                    .ok_or_else(|| {
                        usage(format!(
                            "--attach {spec}: no manifest entry has ContentId or AttachmentName {name:?} (use CONTENT_ID=PATH)"
                        ))
                    })?;
                (m.content_id.clone(), path)
            }
        };
        if !path.is_file() {
            return Err(usage(format!(
                "--attach {spec}: {} is not a file",
                path.display()
            )));
        }
        pairs.push((id, path));
    }
    let sources: Vec<(String, &dyn AttachmentSource)> = pairs
        .iter()
        .map(|(id, p)| (id.clone(), p as &dyn AttachmentSource))
        .collect();
    let out = Outgoing::new(env, sources).map_err(usage)?;
    let file = std::fs::File::create(&a.out)
        .map_err(|e| usage(format!("cannot write {}: {e}", a.out.display())))?;
    let mut w = BufWriter::new(file);
    let (written, signer) = if a.unsigned {
        (out.write(None, &mut w).map_err(failed)?, None)
    } else {
        if a.keys.profile.is_none() && a.keys.key.is_none() {
            return Err(usage(
                "give --key KEY.pem --cert CERT.pem, or --profile NAME with --config, or --unsigned",
            ));
        }
        let m = material(&a.keys, None)?;
        let key = m
            .key
            .clone()
            .ok_or_else(|| usage(format!("profile {} has no key to sign with", m.profile)))?;
        (
            out.sign_to(&key, &mut w).map_err(failed)?,
            key.certificate().cloned(),
        )
    };
    w.flush()
        .map_err(|e| failed(format!("writing {}: {e}", a.out.display())))?;
    println!(
        "built {} ({written} bytes): {}, {} attachment(s)",
        a.out.display(),
        kind(out.envelope()),
        out.envelope().manifest.len()
    );
    match signer {
        Some(c) => println!(
            "  signed: XML-DSig enveloped, exclusive C14N, by {}",
            describe_certificate(&c).subject
        ),
        None => println!("  unsigned"),
    }
    Ok(())
}

fn kind(e: &Envelope) -> String {
    match &e.header {
        Header::Document(h) => format!("document {}", h.document_id),
        Header::Status(s) => format!(
            "status {} ({}) for {}",
            s.status.code().unwrap_or("--"),
            s.status.meaning(),
            s.response_for.document_id
        ),
    }
}

fn open(file: &Path) -> Result<BufReader<std::fs::File>, Failure> {
    std::fs::File::open(file)
        .map(|f| BufReader::with_capacity(256 * 1024, f))
        .map_err(|e| usage(format!("cannot read {}: {e}", file.display())))
}

fn organ_line(o: &Organ) -> String {
    format!("{}  {}", o.organ_id, o.organ_name)
}

fn field(name: &str, value: &str) {
    println!("  {name:<18}{value}");
}

fn inspect(file: &Path) -> Result<(), Failure> {
    let u = read(open(file)?, &mut Discard).map_err(failed)?;
    let e = u.inspect_unverified();
    println!("edXML envelope {} ({} bytes)", file.display(), u.size);
    match &e.header {
        Header::Document(h) => {
            println!("document (MessageHeader)");
            field("from", &organ_line(&h.from));
            for t in &h.to {
                field("to", &organ_line(t));
            }
            field("document id", &h.document_id.to_string());
            field(
                "code",
                &format!("{} / {}", h.code.code_number, h.code.code_notation),
            );
            field(
                "promulgation",
                &format!(
                    "{}, {}",
                    h.promulgation_info.place, h.promulgation_info.promulgation_date
                ),
            );
            field(
                "document type",
                &format!("{} {}", h.document_type.kind, h.document_type.type_name),
            );
            field("subject", &h.subject);
            if let Some(c) = &h.content {
                field("content", c);
            }
            let si = &h.signer_info;
            field(
                "signer info",
                &[
                    si.competence.as_deref(),
                    si.position.as_deref(),
                    Some(&si.full_name),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", "),
            );
            if let Some(d) = &h.due_date {
                field("due date", d);
            }
            for p in &h.to_places {
                field("to place", p);
            }
            for r in &h.response_for {
                field("response for", &r.document_id.to_string());
            }
        }
        Header::Status(s) => {
            println!("status message (Status)");
            field("from", &organ_line(&s.from));
            field("response for", &s.response_for.document_id.to_string());
            field(
                "status code",
                &format!(
                    "{} {} (axis word: {})",
                    s.status.code().unwrap_or("--"),
                    s.status.meaning(),
                    s.status.word().unwrap_or("none")
                ),
            );
            if let Some(d) = &s.description {
                field("description", d);
            }
            field("timestamp", &s.timestamp);
            if let Some(st) = &s.staff_info {
                field(
                    "staff",
                    &[
                        st.department.as_deref(),
                        st.staff.as_deref(),
                        st.email.as_deref(),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", "),
                );
            }
        }
    }
    println!("trace ({}):", e.trace.len());
    for t in &e.trace {
        println!("  {}  at {}", t.organ_id, t.timestamp);
    }
    println!("manifest ({}):", e.manifest.len());
    for m in &e.manifest {
        let a: Option<&AttachmentInfo> =
            u.attachments.iter().find(|a| a.content_id == m.content_id);
        println!("  {}", m.content_id);
        println!("    name          {}", m.attachment_name);
        println!("    type          {}", m.content_type);
        if let Some(d) = &m.description {
            println!("    description   {d}");
        }
        if let Some(a) = a {
            println!("    size          {} bytes", a.size);
            println!("    sha-256       {}", gw_crypto::util::hex(&a.sha256));
        }
    }
    if u.is_signed() {
        println!(
            "signature: present (not verified here: gateway edxml verify FILE --trust ANCHORS.pem)"
        );
        if let Some(c) = u.claimed_signer() {
            let i = describe_certificate(&c);
            println!("  claimed signer  {}", i.subject);
            println!("  issuer          {}", i.issuer);
        }
    } else {
        println!("signature: NONE (the axis refuses unsigned envelopes)");
    }
    Ok(())
}

fn verify(file: &Path, trust: &Path, intermediates: Option<&Path>) -> Result<(), Failure> {
    let pem =
        std::fs::read(trust).map_err(|e| usage(format!("cannot read {}: {e}", trust.display())))?;
    let mut store =
        TrustStore::from_pem(&pem).map_err(|e| usage(format!("{}: {e}", trust.display())))?;
    if let Some(p) = intermediates {
        let pem =
            std::fs::read(p).map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?;
        store
            .add_intermediates_pem(&pem)
            .map_err(|e| usage(format!("{}: {e}", p.display())))?;
    }
    let u = read(open(file)?, &mut Discard).map_err(|e| failed(format!("structure: {e}")))?;
    let r = u.verify(&store).map_err(failed)?;
    let i = describe_certificate(&r.signer);
    println!("VALID {}: {}", file.display(), kind(&r.envelope));
    println!("  signer          {}", i.subject);
    println!("  issuer          {}", i.issuer);
    println!("  serial          {}", i.serial);
    println!("  expires in      {} day(s)", i.days_to_expiry);
    println!("  attachments     {}", r.attachments.len());
    Ok(())
}

/// `edxml history`: the axis store's rows for the document, then its route trail.
async fn history(document_id: &str, config: &Path) -> Result<ExitCode, Failure> {
    let loaded = crate::config::load(config).map_err(usage)?;
    let url = loaded.store_url().map_err(usage)?;
    let tls = crate::app::store_tls(&loaded).map_err(usage)?;
    let store = gw_store::axis::open_tls(&url, tls).await.map_err(failed)?;
    let rows = store.history(document_id).await.map_err(failed)?;
    println!("document {document_id}");
    if rows.is_empty() {
        println!("no status on the axis recorded");
    } else {
        println!(
            "{:>3}  {:<24}  {:<9}  {:<4}  {:<12}  {:<12}  detail",
            "seq", "at (UTC)", "direction", "code", "word", "axis id"
        );
        for r in &rows {
            println!(
                "{:>3}  {:<24}  {:<9}  {:<4}  {:<12}  {:<12}  {}",
                r.seq,
                crate::ops::api::rfc3339(r.at_ms),
                r.direction,
                r.code.as_deref().unwrap_or("-"),
                r.word.as_deref().unwrap_or("-"),
                r.axis_id,
                r.detail
            );
        }
    }
    println!("route trail:");
    let trail = super::ops::trace(&loaded, document_id)
        .await
        .map_err(failed)?;
    Ok(if rows.is_empty() {
        trail
    } else {
        ExitCode::SUCCESS
    })
}
