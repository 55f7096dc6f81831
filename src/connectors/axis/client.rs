//! [`AxisClient`]: one authenticated call per operation on the adapter's HTTP client.
//!
//! # Invariants
//! - Every call goes through `transport::client::HttpClient` (TLS, pool, timeouts, quota,
//!   the evidence capture); the credentials travel in the configured headers only.
//! - [`AxisClient::send`] returns the raw answer for the route runtime to classify; the
//!   receiving calls (used by the poll job) return the data or an [`AxisCallError`] naming the
//!   operation and the axis's code: they are never read as success when they are not.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::request::{self, GET, LIST, UPDATE};
use super::response::{is_xml, reply, Reply};
use super::settings::{Settings, SettingsError};
use crate::config::AdapterSection;
use crate::model::outcome::Answer;
use crate::transport::client::{ClientError, HttpClient, OutRequest};

/// Why a receiving call gave no data.
#[derive(Debug, thiserror::Error)]
pub enum AxisCallError {
    /// No answer, or an HTTP error status.
    #[error("{operation}: {answer}")]
    Transport {
        operation: &'static str,
        answer: String,
    },
    /// The axis answered `FAIL`.
    #[error("{operation}: the axis refused: {code}: {desc}")]
    Refused {
        operation: &'static str,
        code: String,
        desc: String,
    },
    /// The answer is not what the operation returns.
    #[error("{operation}: unreadable answer: {why}")]
    Malformed {
        operation: &'static str,
        why: String,
    },
}

/// One received item, as `getReceivedEdocList` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListItem {
    pub id: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub messagetype: String,
}

/// The axis's calls for one adapter.
pub struct AxisClient {
    pub settings: Settings,
    http: HttpClient,
}

/// Why the client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl AxisClient {
    pub fn new(name: &str, a: &AdapterSection, base: &Path) -> Result<Self, BuildError> {
        Ok(AxisClient {
            settings: Settings::from_section(a, base)?,
            http: HttpClient::build(name, a, base)?,
        })
    }

    /// POST one request; the answer, its latency and the whole body when one came.
    pub async fn post(&self, req: &OutRequest) -> (Answer, Duration, Option<Vec<u8>>) {
        self.http.post_full(req).await
    }

    /// `sendEdoc` of a signed envelope's bytes: the request (for its digest) and the answer.
    pub fn send_request(&self, xml: Vec<u8>, messagetype: &str) -> OutRequest {
        let s = &self.settings;
        request::request(
            s,
            &s.send_url,
            &request::send_header(s, messagetype),
            Some(xml),
        )
    }

    /// `updateStatus` of one item.
    pub fn update_request(&self, doc_id: &str, word: &str) -> OutRequest {
        let s = &self.settings;
        request::request(
            s,
            &s.status_url,
            &request::update_header(doc_id, word),
            None,
        )
    }

    /// A call whose answer must be `OK` JSON: its fields.
    async fn json_call(
        &self,
        operation: &'static str,
        req: OutRequest,
    ) -> Result<serde_json::Map<String, Value>, AxisCallError> {
        let (answer, _, body) = self.post(&req).await;
        let body = ok_body(operation, &answer, body)?;
        match reply(&body) {
            Reply::Ok(m) => Ok(m),
            Reply::Fail { code, desc } => Err(AxisCallError::Refused {
                operation,
                code,
                desc,
            }),
            Reply::Malformed(why) => Err(AxisCallError::Malformed { operation, why }),
        }
    }

    /// `getReceivedEdocList`: every pending item of `messagetype`, page after page (at most
    /// 100 pages a call, so a misbehaving axis cannot keep it looping).
    pub async fn list(&self, messagetype: &str) -> Result<Vec<ListItem>, AxisCallError> {
        let s = &self.settings;
        let mut all = Vec::new();
        for page in 0..100u32 {
            let req = request::request(
                s,
                &s.list_url,
                &request::list_header(s, messagetype, page),
                None,
            );
            let m = self.json_call(LIST, req).await?;
            let data = m.get("data").cloned().unwrap_or(Value::Array(Vec::new()));
            let items: Vec<ListItem> =
                serde_json::from_value(data).map_err(|e| AxisCallError::Malformed {
                    operation: LIST,
                    why: format!("data: {e}"),
                })?;
            let n = items.len();
            all.extend(items);
            if n < s.page_size as usize {
                break;
            }
        }
        Ok(all)
    }

    /// `getEdoc`: the edXML file of one item, as the axis holds it.
    pub async fn get(&self, doc_id: &str) -> Result<Vec<u8>, AxisCallError> {
        let s = &self.settings;
        let req = request::request(s, &s.get_url, &request::get_header(doc_id), None);
        let (answer, _, body) = self.post(&req).await;
        let body = ok_body(GET, &answer, body)?;
        if is_xml(&body) {
            return Ok(body);
        }
        match reply(&body) {
            Reply::Fail { code, desc } => Err(AxisCallError::Refused {
                operation: GET,
                code,
                desc,
            }),
            Reply::Ok(_) => Err(AxisCallError::Malformed {
                operation: GET,
                why: "OK without the file".into(),
            }),
            Reply::Malformed(why) => Err(AxisCallError::Malformed {
                operation: GET,
                why,
            }),
        }
    }

    /// `updateStatus` of one item with an axis word.
    pub async fn update_status(&self, doc_id: &str, word: &str) -> Result<(), AxisCallError> {
        self.json_call(UPDATE, self.update_request(doc_id, word))
            .await
            .map(|_| ())
    }
}

/// The body of a 2xx answer, or the transport error.
fn ok_body(
    operation: &'static str,
    answer: &Answer,
    body: Option<Vec<u8>>,
) -> Result<Vec<u8>, AxisCallError> {
    match (answer, body) {
        (Answer::Http { status, .. }, Some(b)) if (200..300).contains(status) => Ok(b),
        (Answer::Http { status, .. }, Some(b)) => match reply(&b) {
            // A refusal answered with an HTTP error (401): the axis's code is the news.
            Reply::Fail { code, desc } => Err(AxisCallError::Refused {
                operation,
                code,
                desc,
            }),
            _ => Err(AxisCallError::Transport {
                operation,
                answer: format!("HTTP {status}"),
            }),
        },
        (a, _) => Err(AxisCallError::Transport {
            operation,
            answer: a.summary(),
        }),
    }
}
