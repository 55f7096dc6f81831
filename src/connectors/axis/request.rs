//! The axis's operations: their names, their JSON headers ([seen] in the axis SDK's client
//! code) and the HTTP request of one call ([open]: the header names and paths are settings).

use serde_json::{json, Value};

use super::settings::Settings;
use crate::transport::client::OutRequest;

pub const SEND: &str = "sendEdoc";
pub const LIST: &str = "getReceivedEdocList";
pub const GET: &str = "getEdoc";
pub const UPDATE: &str = "updateStatus";

/// `messagetype` of a document and of a status message.
pub const EDOC: &str = "edoc";
pub const STATUS: &str = "status";

/// `sendEdoc`'s header.
pub fn send_header(s: &Settings, messagetype: &str) -> Value {
    json!({"from": s.system_id, "servicetype": "eDoc", "messagetype": messagetype})
}

/// `getReceivedEdocList`'s header: the items not yet given a status, one page.
pub fn list_header(s: &Settings, messagetype: &str, page_index: u32) -> Value {
    json!({"from": s.system_id, "servicetype": "eDoc", "messagetype": messagetype,
           "fromDate": "", "toDate": "", "status": "pending",
           "pageSize": s.page_size, "pageIndex": page_index})
}

/// `getEdoc`'s header.
pub fn get_header(doc_id: &str) -> Value {
    json!({"filePath": "xml", "docId": doc_id})
}

/// `updateStatus`'s header.
pub fn update_header(doc_id: &str, word: &str) -> Value {
    json!({"status": word, "docId": doc_id})
}

/// One call: credentials and the JSON header in headers, `body` (the edXML file) if any.
pub fn request(s: &Settings, url: &str, header: &Value, body: Option<Vec<u8>>) -> OutRequest {
    let mut headers = vec![
        (s.system_header.to_ascii_lowercase(), s.system_id.clone()),
        (
            s.secret_header.to_ascii_lowercase(),
            s.secret.expose().to_string(),
        ),
        (s.json_header.to_ascii_lowercase(), header.to_string()),
    ];
    let body = match body {
        Some(b) => {
            headers.push(("content-type".into(), "application/xml".into()));
            b
        }
        None => Vec::new(),
    };
    OutRequest {
        url: url.to_string(),
        headers,
        body,
    }
}
