//! The national document exchange axis (edXML, QCVN 102:2016; CONTRACTS.md §5): documents go
//! out as signed edXML envelopes (`sendEdoc`), statuses as axis words (`updateStatus`); the
//! receiving side (`getReceivedEdocList`, `getEdoc`, `updateStatus inbox`) is driven by the
//! singleton job `crate::jobs::axis` through [`AxisClient`].
//!
//! # Invariants
//! - **The wire is configuration** ([open] in the contract): the four paths, the header names
//!   carrying the system id, the secret and the JSON header; the JSON headers themselves are
//!   the ones seen in the axis SDK's client code ([seen]): `{"from", "servicetype": "eDoc",
//!   "messagetype"}` and so on ([`request`]).
//! - **Signed before it leaves.** An envelope is built and signed with the adapter's
//!   `xmldsig-enveloped` profile's key (the province's), enveloped XML-DSig with exclusive
//!   C14N, on the blocking pool; it must come `From` the configured organ, checked before
//!   anything is sent. A description that does not build is refused (dead-lettered) with the
//!   codec's message naming the element; it is never sent unsigned.
//! - **The connector decides nothing about retries**: [`connector::AxisConnector::deliver`]
//!   returns an `Attempted`. A 2xx `{"status": "OK"}` is delivered; `FAIL` with an
//!   `errorCode` listed in `retryable_codes` is retried, any other `FAIL` refused with the
//!   axis's code and description; transport failures, 5xx, 429 and 401 as for every party.
//!   One call is one exchange (one `Health`).
//! - Every call goes through the adapter's `transport::client::HttpClient` (TLS, pools,
//!   timeouts, quota, evidence capture).
//! - An exchange in doubt is sent again: the axis answers the same bytes with the first
//!   `docID` (RSA signatures are deterministic, so the same description gives the same bytes);
//!   the party offers no look-up.
//!
//! # Files (imports go down this list)
//! - `settings.rs`: `[adapters.NAME.axis]` resolved once (URLs, secret).
//! - `request.rs`: the operations' names, JSON headers and requests.
//! - `response.rs`: reading the axis's answers (`OK`/`FAIL`, the list, an edXML file).
//! - `translate.rs`: event payloads ↔ edXML (the `document.*` payloads), pure.
//! - `client.rs`: [`AxisClient`], one authenticated call per operation.
//! - `connector.rs`: [`AxisConnector`], the route destination.

pub mod client;
pub mod connector;
pub mod request;
pub mod response;
pub mod settings;
pub mod translate;

pub use client::{AxisCallError, AxisClient, ListItem};
pub use connector::AxisConnector;
pub use settings::{Settings, SettingsError};
