//! The running axis sandbox: router, listener, control methods, the sandbox endpoints.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use gw_crypto::keys::{load_pem, SigningKey, TrustStore};
use gw_edxml::model::{Envelope, Header, Organ, ResponseFor, StatusHeader, TraceHeader};
use gw_edxml::read::{read, Discard};
use gw_edxml::status::Status;
use gw_edxml::write::Outgoing;

use super::api::{get_ep, list_ep, now_ms, send_ep, update_ep, Shared};
use super::config::{certs_example, AxisConfig};
use super::state::{AxisFaults, AxisRecords, Held, State as St};

/// A running axis sandbox.
#[derive(Clone)]
pub struct Axis {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
}

/// Why the sandbox cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("trust anchors {path}: {detail}")]
    Trust { path: String, detail: String },
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// Why a held item or a status answer cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("no document {doc_id} was sent to the axis")]
    UnknownDocument { doc_id: String },
    #[error("status {status:?} is neither a status word nor a StatusCode")]
    UnknownStatus { status: String },
    #[error("the sent envelope cannot be read again: {0}")]
    Reread(gw_edxml::EdxmlError),
    #[error("the document was sent by no connected system")]
    NoSender,
    #[error("the responder key: {0}")]
    Key(String),
    #[error("building the status message: {0}")]
    Build(gw_edxml::EdxmlError),
}

impl Axis {
    /// Start on `127.0.0.1:<port>` (0 = any free port).
    pub async fn start(port: u16, cfg: AxisConfig) -> Result<Axis, StartError> {
        let pem = std::fs::read(&cfg.trust_anchors).map_err(|e| StartError::Trust {
            path: cfg.trust_anchors.display().to_string(),
            detail: e.to_string(),
        })?;
        let trust = TrustStore::from_pem(&pem).map_err(|e| StartError::Trust {
            path: cfg.trust_anchors.display().to_string(),
            detail: e.to_string(),
        })?;
        let shared = Arc::new(Shared {
            trust,
            state: Arc::new(Mutex::new(St::default())),
            cfg,
        });
        let c = &shared.cfg;
        let app = Router::new()
            .route(&c.send_path, post(send_ep))
            .route(&c.list_path, post(list_ep))
            .route(&c.get_path, post(get_ep))
            .route(&c.status_path, post(update_ep))
            .route("/_sandbox/records", get(records_ep))
            .route("/_sandbox/faults", get(faults_ep).post(set_faults_ep))
            .route("/_sandbox/inbox", post(inbox_ep))
            .route("/_sandbox/respond", post(respond_ep))
            .with_state(shared.clone());
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Ok(Axis { shared, addr })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn config(&self) -> &AxisConfig {
        &self.shared.cfg
    }

    pub fn records(&self) -> AxisRecords {
        self.shared.state.lock().unwrap().records.clone()
    }

    pub fn set_faults(&self, f: AxisFaults) {
        self.shared.state.lock().unwrap().faults = f;
    }

    /// The bytes of an accepted envelope, by its `docID`.
    pub fn sent_xml(&self, doc_id: &str) -> Option<Vec<u8>> {
        let g = self.shared.state.lock().unwrap();
        g.records
            .sent
            .iter()
            .find(|d| d.doc_id == doc_id)
            .map(|d| d.xml.clone())
    }

    /// Hold an edXML file for `to_system` (`messagetype` `edoc` or `status`), as if another
    /// organ had sent it; returns its id. Not checked: a test may hold a bad envelope to see
    /// the receiver refuse it.
    pub fn hold(&self, to_system: &str, from: &str, messagetype: &str, xml: Vec<u8>) -> String {
        let mut g = self.shared.state.lock().unwrap();
        let id = g.new_id("in");
        g.records.held.push(Held {
            id: id.clone(),
            to_system: to_system.into(),
            from: from.into(),
            messagetype: messagetype.into(),
            statuses: Vec::new(),
            fetched: 0,
            created_ms: now_ms(),
            xml,
        });
        id
    }

    /// The organ a sent document went to answers it with `status` (a word or a code): a
    /// status message signed with the responder key, held for the sending system. Returns
    /// the held item's id.
    pub fn respond(&self, doc_id: &str, status: &str) -> Result<String, HoldError> {
        let st = Status::from_word(status)
            .or_else(|| Status::from_code(status))
            .filter(|s| s.code().is_some())
            .ok_or_else(|| HoldError::UnknownStatus {
                status: status.into(),
            })?;
        let (xml, from_system) = {
            let g = self.shared.state.lock().unwrap();
            let d = g
                .records
                .sent
                .iter()
                .find(|d| d.doc_id == doc_id)
                .ok_or_else(|| HoldError::UnknownDocument {
                    doc_id: doc_id.into(),
                })?;
            (d.xml.clone(), d.from_system.clone())
        };
        let sent = read(&xml[..], &mut Discard).map_err(HoldError::Reread)?;
        let Header::Document(h) = &sent.inspect_unverified().header else {
            return Err(HoldError::UnknownDocument {
                doc_id: doc_id.into(),
            });
        };
        let answerer = h.to.first().cloned().ok_or(HoldError::NoSender)?;
        let ts = "2026/12/06 10:00:00".to_string();
        let env = Envelope {
            header: Header::Status(StatusHeader {
                from: Organ {
                    organ_id: answerer.organ_id.clone(),
                    organ_name: answerer.organ_name.clone(),
                    ..Organ::default()
                },
                response_for: ResponseFor {
                    organ_id: h.from.organ_id.clone(),
                    code: format!("{}/{}", h.code.code_number, h.code.code_notation),
                    promulgation_date: h.promulgation_info.promulgation_date.clone(),
                    document_id: h.document_id.clone(),
                },
                status: st,
                description: Some(format!("Sandbox: {}", st.meaning())),
                timestamp: ts.clone(),
                staff_info: None,
            }),
            trace: vec![TraceHeader {
                organ_id: answerer.organ_id.clone(),
                timestamp: ts,
            }],
            manifest: Vec::new(),
        };
        let key = self.responder_key()?;
        let out = Outgoing::new(env, Vec::new()).map_err(HoldError::Build)?;
        let mut buf = Vec::new();
        out.sign_to(&key, &mut buf).map_err(HoldError::Build)?;
        Ok(self.hold(&from_system, &answerer.organ_id, "status", buf))
    }

    fn responder_key(&self) -> Result<SigningKey, HoldError> {
        let c = &self.shared.cfg;
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| HoldError::Key(format!("{}: {e}", p.display())))
        };
        let mut cert = read(&c.responder_cert)?;
        cert.extend(read(&certs_example().join("intermediate-ca.pem"))?);
        load_pem("axis-organ", &read(&c.responder_key)?, Some(&cert), None)
            .map_err(|e| HoldError::Key(e.to_string()))
    }
}

async fn records_ep(State(sh): State<Arc<Shared>>) -> Json<AxisRecords> {
    Json(sh.state.lock().unwrap().records.clone())
}

async fn faults_ep(State(sh): State<Arc<Shared>>) -> Json<AxisFaults> {
    Json(sh.state.lock().unwrap().faults.clone())
}

async fn set_faults_ep(State(sh): State<Arc<Shared>>, Json(f): Json<AxisFaults>) -> StatusCode {
    sh.state.lock().unwrap().faults = f;
    StatusCode::NO_CONTENT
}

/// `POST /_sandbox/inbox`: headers `to-system`, `from`, `messagetype`; body the edXML.
async fn inbox_ep(
    State(sh): State<Arc<Shared>>,
    h: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let get = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (to, from, mt) = (get("to-system"), get("from"), get("messagetype"));
    if to.is_empty() || !matches!(mt.as_str(), "edoc" | "status") {
        return (
            StatusCode::BAD_REQUEST,
            "headers to-system and messagetype (edoc|status) are required".into(),
        );
    }
    let axis = Axis {
        shared: sh,
        addr: ([127, 0, 0, 1], 0).into(),
    };
    (StatusCode::OK, axis.hold(&to, &from, &mt, body.to_vec()))
}

/// `POST /_sandbox/respond {"docId", "status"}`.
async fn respond_ep(
    State(sh): State<Arc<Shared>>,
    Json(v): Json<serde_json::Value>,
) -> (StatusCode, String) {
    let axis = Axis {
        shared: sh,
        addr: ([127, 0, 0, 1], 0).into(),
    };
    let doc = v["docId"].as_str().unwrap_or("");
    let st = v["status"].as_str().unwrap_or("");
    match axis.respond(doc, st) {
        Ok(id) => (StatusCode::OK, id),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Run the sandbox with its defaults until Ctrl-C (`gateway sandbox axis`).
pub async fn run_standalone(port: u16) -> std::io::Result<()> {
    let cfg = AxisConfig::default();
    let s = Axis::start(port, cfg.clone())
        .await
        .map_err(std::io::Error::other)?;
    println!(
        "document axis (edXML) sandbox listening on {}",
        s.base_url()
    );
    println!(
        "  POST {} {} {} {}  (headers {}, {}, {} = the JSON header)",
        cfg.send_path,
        cfg.list_path,
        cfg.get_path,
        cfg.status_path,
        cfg.system_header,
        cfg.secret_header,
        cfg.json_header
    );
    for sys in &cfg.systems {
        println!(
            "  system {:?} secret {:?} (organ {})",
            sys.system_id, sys.secret, sys.organ_id
        );
    }
    println!(
        "  signatures verified against {}",
        cfg.trust_anchors.display()
    );
    println!(
        "  sandbox: GET {0}/_sandbox/records, GET|POST {0}/_sandbox/faults, POST {0}/_sandbox/inbox, POST {0}/_sandbox/respond",
        s.base_url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
