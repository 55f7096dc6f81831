//! The remote-signing flow: a `signature.requested` event becomes a persisted request, the
//! official signs on a phone through a remote signing service (SmartCA, MySign, CSC), the
//! gateway verifies and assembles the signed document, and `signature.completed` or
//! `signature.failed` goes out through the broker.
//!
//! # Invariants
//! - **The state lives in the store, not in tasks** ([`gw_store::signatures`]): each request
//!   is one row moved one step at a time by [`SignatureService`] ([`SignatureService::round`]
//!   takes bounded batches of due work, due polls, sends in doubt and overdue requests). Ten
//!   thousand requests waiting for officials are ten thousand rows and no task; a restart at
//!   any state resumes from the row.
//! - **Bad input is refused at once, with nothing stored and nothing sent** to any phone
//!   ([`SignatureService::accept`]): an unknown signer service or official, a format the
//!   document's bytes are not, a digest algorithm the service or the official's key cannot
//!   use, a deadline in the past, a document over the cap. The official's certificate is
//!   fetched from the service at accept time (a call to the service, never to the phone) so
//!   that the document can be prepared (its digest computed) and every one of those checks
//!   made before the answer; when the service cannot be reached then, the request is stored
//!   `received` and prepared by the next round (a refusal found then ends it with
//!   `signature.failed`, still before anything reaches a phone).
//! - **One request per (source, key)**: the request id is derived from the source and the
//!   event's key ([`request_id`]); the same request sent again gets the same id and makes no
//!   second request; the same key with another document, official, service or format is
//!   refused (409) rather than silently answered with the first.
//! - **Never a second request to the official's phone**: every submit goes through the store's
//!   send guard ([`gw_store::signatures::SignatureStore::begin_send`]); a send whose answer
//!   was lost is in doubt and resolved only by asking the service (where the service lets the
//!   gateway name the transaction, SmartCA); a resend only when the service says the first
//!   never arrived. A service that cannot be asked fails the request with that reason.
//! - **Nothing unverified is passed on**: a returned signature is checked by
//!   [`crate::signing::remote::RemoteVerifier`] (our digest, the pinned official's
//!   certificate, chain, validity, key usage) before the document is assembled
//!   ([`crate::signing::assemble::finish`]); a refusal is a `signature.failed` whose reason is
//!   the verifier's words and whose `reason_kind` its code.
//! - **Outcomes go out through the outbox**: the terminal transition queues the event in the
//!   same transaction; [`SignatureService::publish_outcomes`] publishes each (publisher
//!   confirms, through a [`crate::payments::NoticeSink`]) under the source name
//!   [`crate::config::SIGNATURE_SOURCE`] and marks it published only then (at least
//!   once; the envelope id is the outbox event id, so consumers deduplicate). Events are
//!   claimed for the publishing instance under a lease first, so two live instances never
//!   publish one outcome twice; a dead one's claims run out and another takes them over.
//! - **Formats and documents** ([`Formats`], `[signatures]`): a request may ask for level
//!   `B-T` (PAdES B-T for PDF, CAdES-T for CMS; XML is refused at the edge): after the
//!   signature verified, the time-stamp over the signature value is its own persisted state
//!   (`verified → timestamped`, the token stored before the transition, so a restart after
//!   the authority answered reuses it and never asks twice). A document may be given by
//!   reference (`{"url", "sha256"}`): refused at the edge unless under an allowed base, fetched
//!   in the `received` step, its hash checked. Both retry failures with backoff through the
//!   store's deferral (attempts counted in the trail), then end with `timestamp_failed` /
//!   `document_fetch_failed`. A PDF request may ask for a visible signature (`visible`: page
//!   and rectangle; the font of `[signatures.appearance]`); it is part of what is prepared,
//!   so the digest sent covers it.
//! - **Cancels reach the service where its contract allows** ([`SignatureService::notify_cancels`]):
//!   retried with backoff, the answer recorded (`not_supported_by_service` for the three
//!   services today), never holding up other requests.
//! - Personal data: an official's user id may be a citizen id (SmartCA); it is stored, never
//!   logged, never in a metric label or an outcome event.
//!
//! # Files
//! - `request.rs`: the `signature.requested` payload, its checks, the request id.
//! - `service.rs`: accept, then one function per state, the round, the outbox drain.
//! - `metrics.rs`: requests by state, time to confirmation, outcomes by reason.
//! - `formats.rs`: the time-stamp authority and the document fetcher.
//! - `cancels.rs`: telling the services of cancels, retried with backoff.
//! - `sync_answer.rs`: a synchronous answer kept across a crash (CSC `operationMode: "S"`).

mod cancels;
mod formats;
mod metrics;
mod request;
mod service;
mod sync_answer;

pub use cancels::{cancel_backoff, CANCEL_RETRY_BASE, CANCEL_RETRY_CAP, MAX_CANCEL_ATTEMPTS};
pub use formats::{
    load_font, DocumentFetcher, FetchError, Formats, FormatsError, StampError, TimeStamper,
};
pub use metrics::SignatureMetrics;
pub use request::{
    request_id, AcceptError, DocumentField, DocumentReference, Level, Refusal,
    SignatureRequestBody, VisibleField,
};
pub use service::{Accepted, RoundReport, ServiceSettings, SignatureService};
