//! A strict sandbox of the national document exchange axis (CONTRACTS.md §5): documents and
//! status messages as signed edXML envelopes (QCVN 102:2016), exchanged through four
//! operations.
//!
//! # Enforced strictly
//!
//! - **[seen]** A connection is a `systemId` + `secret`: every call carries both (missing or
//!   wrong: HTTP 401, `errorCode` `UNAUTHORIZED`).
//! - **[seen]** `sendEdoc` with the JSON header `{"from": <systemId>, "servicetype": "eDoc",
//!   "messagetype": "edoc" | "status"}` and the edXML file as the body → `{"status": "OK",
//!   "docID"}`, or `{"status": "FAIL", "errorCode", "errorDesc"}`. The envelope is read with
//!   the gateway's strict reader (malformed XML, unknown namespace, missing field, bad base64:
//!   `INVALID_EDXML`) and must be signed (`UNSIGNED`) by a certificate chaining to the trust
//!   anchors, with a digest that matches (`BAD_SIGNATURE`); its `From` organ must be the
//!   calling system's organ and every `To` organ one the axis knows (`UNKNOWN_ORGAN`); its
//!   `DocumentId` must be new (`DUPLICATE_DOCUMENT`); its kind (document or status) must be
//!   the header's `messagetype` (`INVALID_HEADER`).
//! - **[seen]** `getReceivedEdocList` (`{"servicetype", "messagetype", "from", "fromDate",
//!   "toDate", "status", "pageSize", "pageIndex"}`) → `{"status": "OK", "data": [{"id",
//!   "from", "to", "servicetype", "messagetype", "created"}]}`: the items held for the calling
//!   system; `status: "pending"` lists only those it has not yet given a status.
//! - **[seen]** `getEdoc` (`{"filePath": "xml", "docId"}`) → the edXML bytes as they were
//!   sent (`application/xml`); an id not addressed to the caller: `NOT_FOUND`.
//! - **[seen]** `updateStatus` (`{"status", "docId"}`), `status` one of the axis words of
//!   `gw_edxml::status::TABLE` (`INVALID_STATUS`), on an item addressed to the caller
//!   (`NOT_FOUND`).
//!
//! # Configurable ([open]) — see [`AxisConfig`]
//!
//! - The wire: one `POST` per operation at a configured path (default `/sendEdoc`,
//!   `/getReceivedEdocList`, `/getEdoc`, `/updateStatus`); `systemId` and `secret` in HTTP
//!   headers of those names; the JSON header in the HTTP header `edoc-header`; answers HTTP
//!   200 with `status` `OK`/`FAIL` (401 for credentials, 400 for an unreadable JSON header).
//! - **Idempotency**: the same envelope sent again (byte for byte) is answered with its first
//!   `docID` and recorded as a re-send, not refused; only a *different* envelope reusing a
//!   DocumentId is `DUPLICATE_DOCUMENT`. (A client whose answer was lost can safely re-send.)
//! - Which organs exist: [`AxisConfig::organs`].
//!
//! # Sandbox endpoints
//! `GET /_sandbox/records`, `GET|POST /_sandbox/faults` ([`AxisFaults`]: 503 before the effect,
//! 500 after it, a stall), `POST /_sandbox/inbox` (hold an edXML file for a system, header
//! `to-system` and `messagetype`), `POST /_sandbox/respond` (`{"docId", "status"}`: the organ a
//! sent document went to answers with a status message signed by the sandbox's organ key).
//!
//! # Files
//! `config.rs` the settings; `state.rs` the records, faults and held items; `api.rs` the four
//! operations; `server.rs` [`Axis`], the router, the sandbox endpoints and `run_standalone`.

mod api;
mod config;
mod server;
mod state;

pub use config::{AxisConfig, AxisSystem};
pub use server::{run_standalone, Axis, StartError};
pub use state::{AxisFaults, AxisRecords, Held, Refusal, SentDoc, StatusUpdate};
