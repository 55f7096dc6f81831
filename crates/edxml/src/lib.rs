//! edXML (QCVN 102:2016): the envelopes of the national document exchange axis. The model, a
//! streamed builder and a strict streamed parser, enveloped XML-DSig over the whole envelope.
//! Used by the gateway (`gateway edxml …`, the axis connector) and by the axis sandbox in
//! `contract-tests/`, which cannot depend on the gateway: hence a crate.
//!
//! Invariants:
//! - One XML stack: gw-crypto's parser, canonicalization and XML-DSig; every spelling of an
//!   element in [`names`], every status code and axis word in [`status`].
//! - Memory does not grow with attachments several times over: building encodes each
//!   attachment from a `Read` in chunks into the output (two passes when signing: digest,
//!   then output); reading decodes each attachment in pieces into a sink while the canonical
//!   form is digested on the fly ([`gw_crypto::xml::stream`]). The bench (`examples/bench.rs`)
//!   measures peak RSS for a 50 MiB attachment.
//! - The signature is an enveloped XML-DSig (`URI=""`, enveloped-signature + exclusive C14N,
//!   RSA-SHA256 or ECDSA-SHA256, KeyInfo/X509Data) as edXMLHeader's last child; a received
//!   envelope is handed out only after [`read::Unverified::verify`] against trust anchors.
//! - Text is preserved exactly (no trimming or normalisation) through build and parse.
//!
//! Files, each importing only those before it:
//! - `names.rs`: namespace and element names, with [seen]/[likely]/[open] marks.
//! - `status.rs`: the status table (code, axis word, meaning).
//! - `error.rs`: [`EdxmlError`].
//! - `model.rs`: the typed envelope (also the JSON description of `gateway edxml build`).
//! - `write.rs`: [`write::Outgoing`]: build, sign in one or two steps (remote signers).
//! - `read.rs`: [`read::read`] and [`read::Unverified::verify`].

pub mod error;
pub mod model;
pub mod names;
pub mod read;
pub mod status;
pub mod write;

pub use error::EdxmlError;
