//! A page's bytes and its signature (invariants in [`super`]).

use gw_crypto::jws::{JwsAlgorithm, JwsOptions, KeyHint};
use gw_crypto::keys::{KeyKind, SigningKey};
use gw_store::feeds::Page;

/// The response header carrying a page's detached JWS.
pub const SIGNATURE_HEADER: &str = "feed-signature";
/// The `typ` of a page's JWS header.
pub const JWS_TYP: &str = "gw-feed-page+jws";

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// A stored event is not JSON (the store was changed behind the gateway's back).
    #[error("the stored event at cursor {seq} of {subscription} is not JSON: {detail}")]
    StoredEvent {
        subscription: String,
        seq: i64,
        detail: String,
    },
    /// The signing profile has no key, or not a P-256 one.
    #[error("signing profile {profile}: {what}")]
    SigningKey { profile: String, what: String },
    #[error("signing the page failed: {0}")]
    Sign(#[from] gw_crypto::jws::JwsError),
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("a string serialises");
}

/// The bytes of a page of `subscription` (fixed member order):
/// `{"subscription":…,"after":…,"next":…,"entries":[{"cursor":…,"at_ms":…,"kind":…,
/// "dossier":…,"fields":[…],"digest":…,"event":{…}}]}`.
pub fn render_page(subscription: &str, page: &Page) -> Result<Vec<u8>, FeedError> {
    let size: usize = page
        .entries
        .iter()
        .map(|e| e.entry.payload.len() + 256)
        .sum();
    let mut out = Vec::with_capacity(size + 128);
    out.extend_from_slice(b"{\"subscription\":");
    push_json_str(&mut out, subscription);
    out.extend_from_slice(
        format!(
            ",\"after\":{},\"next\":{},\"entries\":[",
            page.after, page.next
        )
        .as_bytes(),
    );
    for (i, e) in page.entries.iter().enumerate() {
        let n = &e.entry;
        if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(&n.payload) {
            return Err(FeedError::StoredEvent {
                subscription: subscription.into(),
                seq: e.seq,
                detail: err.to_string(),
            });
        }
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(
            format!("{{\"cursor\":{},\"at_ms\":{},\"kind\":", e.seq, n.at_ms).as_bytes(),
        );
        push_json_str(&mut out, &n.kind);
        out.extend_from_slice(b",\"dossier\":");
        push_json_str(&mut out, &n.dossier);
        out.extend_from_slice(b",\"fields\":");
        serde_json::to_writer(&mut out, &n.fields).expect("strings serialise");
        out.extend_from_slice(b",\"digest\":");
        push_json_str(&mut out, &n.digest);
        out.extend_from_slice(b",\"event\":");
        out.extend_from_slice(&n.payload);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// The bytes of an answer to `since`: `{"subscription":…,"since":…,"cursor":…}`.
pub fn render_since(subscription: &str, since: &str, cursor: i64) -> Vec<u8> {
    let mut out = b"{\"subscription\":".to_vec();
    push_json_str(&mut out, subscription);
    out.extend_from_slice(b",\"since\":");
    push_json_str(&mut out, since);
    out.extend_from_slice(format!(",\"cursor\":{cursor}}}").as_bytes());
    out
}

/// Signs pages with one P-256 key: detached JWS, unencoded payload, ES256, `kid`.
#[derive(Clone)]
pub struct PageSigner {
    key: SigningKey,
}

impl std::fmt::Debug for PageSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageSigner(kid {})", self.key.id())
    }
}

impl PageSigner {
    /// The signer of the profile `profile`, whose key must be P-256 (ES256).
    pub fn new(profile: &str, key: Option<&SigningKey>) -> Result<Self, FeedError> {
        let key = key.ok_or_else(|| FeedError::SigningKey {
            profile: profile.into(),
            what: "has no key to sign with (set key + certificate, or pkcs12)".into(),
        })?;
        if key.kind() != KeyKind::EcP256 {
            return Err(FeedError::SigningKey {
                profile: profile.into(),
                what: "feed pages are signed ES256: the key must be EC P-256".into(),
            });
        }
        Ok(PageSigner { key: key.clone() })
    }

    /// The key id agencies look the public key up by.
    pub fn key_id(&self) -> &str {
        self.key.id()
    }

    /// The detached JWS (`header..signature`) of `body`.
    pub fn sign(&self, body: &[u8]) -> Result<String, FeedError> {
        let opts = JwsOptions {
            algorithm: Some(JwsAlgorithm::Es256),
            key_hint: KeyHint::Kid,
            typ: Some(JWS_TYP.into()),
            extra: Default::default(),
        };
        Ok(gw_crypto::jws::sign_detached(body, &self.key, &opts)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gw_store::feeds::{Entry, NewEntry};

    fn entry(seq: i64, payload: &[u8]) -> Entry {
        Entry {
            seq,
            entry: NewEntry {
                event_id: format!("e{seq}"),
                dossier: "000.00.01.H12-261206-0001".into(),
                kind: "dossier.upserted".into(),
                payload: payload.to_vec(),
                fields: vec!["code".into(), "status".into()],
                digest: gw_crypto::digest::sha256_hex(payload),
                at_ms: 1_000 + seq,
            },
        }
    }

    #[test]
    fn a_page_embeds_each_event_unchanged_in_a_fixed_order() {
        let events: [&[u8]; 2] = [
            br#"{"id":"e1","data":{"code":"A"}}"#,
            br#"{"z":1,"a":"\u00e9"}"#,
        ];
        let page = Page {
            after: 4,
            entries: vec![entry(5, events[0]), entry(6, events[1])],
            next: 6,
            head: 9,
        };
        let body = render_page("ioc", &page).unwrap();
        assert_eq!(body, render_page("ioc", &page).unwrap(), "same bytes twice");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["after"], 4);
        assert_eq!(v["next"], 6);
        assert!(v.get("head").is_none(), "the head changes: not in the body");
        let text = String::from_utf8(body.clone()).unwrap();
        for (i, ev) in events.iter().enumerate() {
            assert!(
                text.contains(std::str::from_utf8(ev).unwrap()),
                "event {i} verbatim"
            );
            assert_eq!(v["entries"][i]["digest"], gw_crypto::digest::sha256_hex(ev));
        }
        assert!(text.starts_with(
            r#"{"subscription":"ioc","after":4,"next":6,"entries":[{"cursor":5,"at_ms":1005,"kind":"dossier.upserted""#
        ));
        let empty = Page {
            after: 6,
            entries: vec![],
            next: 6,
            head: 6,
        };
        assert_eq!(
            render_page("ioc", &empty).unwrap(),
            br#"{"subscription":"ioc","after":6,"next":6,"entries":[]}"#
        );
        let bad = Page {
            after: 0,
            entries: vec![entry(1, b"{not json")],
            next: 1,
            head: 1,
        };
        assert!(matches!(
            render_page("ioc", &bad),
            Err(FeedError::StoredEvent { seq: 1, .. })
        ));
        assert_eq!(
            render_since("ioc", "2026-12-01T00:00:00Z", 7),
            br#"{"subscription":"ioc","since":"2026-12-01T00:00:00Z","cursor":7}"#
        );
    }

    fn p256(id: &str) -> SigningKey {
        let group =
            openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let ec = openssl::ec::EcKey::generate(&group).unwrap();
        let pkey = openssl::pkey::PKey::from_ec_key(ec).unwrap();
        SigningKey::new(id, pkey, None, vec![]).unwrap()
    }

    #[test]
    fn a_page_signature_verifies_over_the_exact_bytes_only() {
        let key = p256("feed-2026");
        let signer = PageSigner::new("feeds", Some(&key)).unwrap();
        assert_eq!(signer.key_id(), "feed-2026");
        let body = br#"{"subscription":"ioc","after":0,"next":0,"entries":[]}"#;
        let jws = signer.sign(body).unwrap();
        let (h, rest) = jws.split_once("..").expect("detached");
        assert!(!rest.is_empty());
        // The protected header is the same for every page: the signing input is the body's.
        assert_eq!(
            h,
            signer.sign(b"other").unwrap().split_once("..").unwrap().0
        );
        let keys = vec![key.verifying_key().unwrap()];
        let trust = gw_crypto::jws::JwsTrust::Keys(&keys);
        let ok = gw_crypto::jws::verify(&jws, Some(body), trust).unwrap();
        assert_eq!(ok.key_id.as_deref(), Some("feed-2026"));
        assert_eq!(ok.header["typ"], JWS_TYP);
        let mut tampered = body.to_vec();
        tampered[30] = b'1';
        assert!(gw_crypto::jws::verify(&jws, Some(&tampered), trust).is_err());
        assert!(PageSigner::new("feeds", None).is_err());
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let rsa = SigningKey::new(
            "rsa",
            openssl::pkey::PKey::from_rsa(rsa).unwrap(),
            None,
            vec![],
        )
        .unwrap();
        let e = PageSigner::new("feeds", Some(&rsa))
            .unwrap_err()
            .to_string();
        assert!(e.contains("P-256"), "{e}");
    }
}
