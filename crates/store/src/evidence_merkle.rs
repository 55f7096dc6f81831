//! Evidence per batch: one chain link per store batch, committing to the batch's exchanges
//! through a Merkle tree (RFC 6962 / RFC 9162 hashing), and the checks that walk such links.
//!
//! # Invariants
//! - **Leaf.** Each exchange is a leaf. Its *leaf text* ([`leaf_text`]) is a line-oriented UTF-8
//!   text starting with [`LEAF_TAG`] of every field of the [`EvidenceRecord`] except the chain
//!   and the kept (sealed) bodies, which are committed to through their digests. The leaf hash
//!   is `SHA-256(0x00 || leaf text)`.
//! - **Node.** An inner node is `SHA-256(0x01 || left || right)` (32-byte hashes). The root of
//!   `n` leaves is RFC 6962's MTH: one leaf is its own root; otherwise the first `k` leaves (`k`
//!   the largest power of two below `n`) on the left, the rest on the right. The two prefixes
//!   keep a leaf from ever being taken for a node (second-preimage resistance).
//! - **Batch link.** A batch of `n >= 1` leaves is one link of its chain; its text
//!   ([`batch_text`], first line [`BATCH_TAG`]) holds chain, seq, prev, id, at_ms (the newest
//!   leaf's), the number of leaves and the root; its hash is `SHA-256(text)`, exactly like a
//!   per-event record's ([`crate::evidence::canonical`]), so both kinds chain into each other and
//!   a time-stamp covers either the same way.
//! - **Order.** Leaves keep the batch order; leaf `i` of a batch is at index `i` of the tree.
//! - **Walk.** [`Walker`] is the one check of a chain's sequence of stored items (per-event
//!   records, and the leaves of batch links, in (seq, leaf) order), used by the store's verifier
//!   and the archive's: every link commits to the previous one and recomputes to its hash, and
//!   every batch has exactly its leaves, whose root is the link's.
//! - Pure data and hashing (no I/O).

use sha2::{Digest, Sha256};

use crate::evidence_records::{
    canonical, hex_lower, line, BatchPlace, EvidenceRecord, StoredEvidence,
};

/// The first line of every leaf text.
pub const LEAF_TAG: &str = "gateway-evidence-leaf-v1";
/// The first line of every batch link text.
pub const BATCH_TAG: &str = "gateway-evidence-batch-v1";

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// The exact bytes (after the 0x00 prefix) hashed for an exchange's leaf.
pub fn leaf_text(r: &EvidenceRecord) -> String {
    let mut s = String::with_capacity(512);
    s.push_str(LEAF_TAG);
    s.push('\n');
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    line(&mut s, "id", &r.id);
    line(&mut s, "exchange", &r.exchange);
    line(&mut s, "at_ms", &r.at_ms.to_string());
    line(&mut s, "adapter", &r.adapter);
    line(&mut s, "direction", &r.direction);
    line(&mut s, "route", &r.route);
    line(&mut s, "envelope_id", &r.envelope_id);
    line(&mut s, "dossier", &r.dossier);
    line(&mut s, "operation", &r.operation);
    line(&mut s, "request_sha256", &r.request_digest);
    line(&mut s, "response_sha256", &opt(&r.response_digest));
    line(&mut s, "signature_sha256", &opt(&r.signature_digest));
    line(&mut s, "certificate_sha256", &opt(&r.cert_fingerprint));
    line(
        &mut s,
        "http_status",
        &r.http_status.map(|s| s.to_string()).unwrap_or_default(),
    );
    line(&mut s, "result_code", &opt(&r.result_code));
    line(&mut s, "mode", &r.mode);
    s
}

/// `SHA-256(0x00 || leaf text)`.
pub fn leaf_hash(r: &EvidenceRecord) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf_text(r).as_bytes());
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (n >= 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The Merkle root of `leaves` (their leaf hashes, in order); `None` for no leaf.
pub fn root(leaves: &[Hash]) -> Option<Hash> {
    match leaves.len() {
        0 => None,
        1 => Some(leaves[0]),
        n => {
            let k = split(n);
            Some(node_hash(&root(&leaves[..k])?, &root(&leaves[k..])?))
        }
    }
}

/// The audit path of leaf `index` (RFC 6962 `PATH(m, D[n])`): sibling hashes, leaf first.
pub fn path(leaves: &[Hash], index: usize) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return vec![];
    }
    let k = split(n);
    let (mut out, sibling) = if index < k {
        (path(&leaves[..k], index), root(&leaves[k..]))
    } else {
        (path(&leaves[k..], index - k), root(&leaves[..k]))
    };
    out.extend(sibling);
    out
}

/// The root that leaf `leaf` at `index` of a tree of `size` leaves leads to through `path`
/// (RFC 9162 2.1.3.2); `None` when the path does not fit the index and size.
pub fn root_from_path(leaf: &Hash, index: u64, size: u64, path: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut f, mut s, mut r) = (index, size - 1, *leaf);
    for p in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

/// The exact bytes hashed for a batch link.
pub fn batch_text(chain: &str, seq: i64, prev_hash: &str, b: &BatchPlace) -> String {
    let mut s = String::with_capacity(256);
    s.push_str(BATCH_TAG);
    s.push('\n');
    line(&mut s, "chain", chain);
    line(&mut s, "seq", &seq.to_string());
    line(&mut s, "prev", prev_hash);
    line(&mut s, "id", &b.id);
    line(&mut s, "at_ms", &b.at_ms.to_string());
    line(&mut s, "leaves", &b.leaves.to_string());
    line(&mut s, "root", &b.root);
    s
}

/// The text of the chain link an item belongs to: its own canonical text (a per-event record)
/// or its batch's link text.
pub fn link_text(s: &StoredEvidence) -> String {
    match &s.batch {
        None => canonical(&s.record, s.seq, &s.prev_hash),
        Some(b) => batch_text(&s.record.chain, s.seq, &s.prev_hash, b),
    }
}

/// SHA-256 hex of [`link_text`].
pub fn link_hash(s: &StoredEvidence) -> String {
    hex_lower(&Sha256::digest(link_text(s).as_bytes()))
}

/// Lowercase hex to a hash.
pub fn parse_hash(hex: &str) -> Option<Hash> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Place a batch's new `records` (one chain, batch order, at least one) after `head` as one
/// link: returns the stored leaves and the new head. `id` names the link.
pub(crate) fn batch_after(
    head: (i64, String),
    id: String,
    records: Vec<EvidenceRecord>,
) -> (Vec<StoredEvidence>, (i64, String)) {
    let (seq, prev) = (head.0 + 1, head.1);
    let leaves: Vec<Hash> = records.iter().map(leaf_hash).collect();
    let place = BatchPlace {
        id,
        at_ms: records.iter().map(|r| r.at_ms).max().unwrap_or_default(),
        leaves: records.len() as u32,
        leaf: 0,
        root: hex_lower(&root(&leaves).unwrap_or_default()),
    };
    let chain = records.first().map(|r| r.chain.clone()).unwrap_or_default();
    let hash = hex_lower(&Sha256::digest(
        batch_text(&chain, seq, &prev, &place).as_bytes(),
    ));
    let out = records
        .into_iter()
        .enumerate()
        .map(|(i, record)| StoredEvidence {
            record,
            seq,
            prev_hash: prev.clone(),
            hash: hash.clone(),
            batch: Some(BatchPlace {
                leaf: i as u32,
                ..place.clone()
            }),
        })
        .collect();
    (out, (seq, hash))
}

/// A batch link being walked: its fields and the leaf hashes seen so far.
struct Open {
    seq: i64,
    hash: String,
    place: BatchPlace,
    leaves: Vec<Hash>,
}

/// Walks the items of one chain in order and names the first one that breaks it (see the
/// module's invariants). Feed [`Walker::step`] each item, then call [`Walker::end`].
pub struct Walker {
    seq: i64,
    prev: String,
    open: Option<Open>,
}

impl Walker {
    /// Start after the link at `seq` with hash `prev` (the chain's anchor, or genesis at 0).
    pub fn new(seq: i64, prev: &str) -> Self {
        Walker {
            seq,
            prev: prev.to_string(),
            open: None,
        }
    }

    /// The last link taken: (seq, hash).
    pub fn last(&self) -> (i64, &str) {
        (self.seq, &self.prev)
    }

    /// Check the next item; `Err(what)` names why it breaks the chain.
    pub fn step(&mut self, r: &StoredEvidence) -> Result<(), String> {
        let Some(b) = &r.batch else {
            self.close()?;
            return self.link(r);
        };
        if b.leaf == 0 {
            self.close()?;
            self.link(r)?;
            self.open = Some(Open {
                seq: r.seq,
                hash: r.hash.clone(),
                place: b.clone(),
                leaves: Vec::with_capacity(b.leaves as usize),
            });
        }
        let Some(open) = &mut self.open else {
            if r.seq == self.seq {
                return Err(format!(
                    "batch seq {} has more leaves than the {} its link commits to (leaf inserted)",
                    r.seq, b.leaves
                ));
            }
            return Err(format!(
                "leaf {} of a batch whose leaf 0 is missing (leaves deleted or reordered)",
                b.leaf
            ));
        };
        let same_link = open.seq == r.seq
            && open.hash == r.hash
            && BatchPlace {
                leaf: 0,
                ..b.clone()
            } == open.place;
        if !same_link || b.leaf as usize != open.leaves.len() {
            return Err(format!(
                "leaf {} of batch seq {} is out of place (expected leaf {} of batch seq {})",
                b.leaf,
                r.seq,
                open.leaves.len(),
                open.seq
            ));
        }
        open.leaves.push(leaf_hash(&r.record));
        if open.leaves.len() == open.place.leaves as usize {
            self.close()?;
        }
        Ok(())
    }

    /// The end of the items: a batch still open lacks leaves.
    pub fn end(&mut self) -> Result<(), String> {
        self.close()
    }

    /// A link (per-event record or first leaf of a batch) follows the last one.
    fn link(&mut self, r: &StoredEvidence) -> Result<(), String> {
        if r.seq != self.seq + 1 {
            return Err(format!(
                "expected seq {} next, found {} (records deleted or reordered)",
                self.seq + 1,
                r.seq
            ));
        }
        if r.prev_hash != self.prev {
            return Err(format!(
                "does not commit to the previous record (prev {} , expected {})",
                r.prev_hash, self.prev
            ));
        }
        if link_hash(r) != r.hash {
            return Err("content does not match its hash (record modified)".to_string());
        }
        self.seq = r.seq;
        self.prev = r.hash.clone();
        Ok(())
    }

    /// Check and close the open batch: all its leaves seen, and their root is the link's.
    fn close(&mut self) -> Result<(), String> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        if open.leaves.len() != open.place.leaves as usize {
            return Err(format!(
                "batch seq {} has {} of the {} leaves its link commits to (leaves deleted)",
                open.seq,
                open.leaves.len(),
                open.place.leaves
            ));
        }
        let again = root(&open.leaves).map(|h| hex_lower(&h));
        if again.as_deref() != Some(open.place.root.as_str()) {
            return Err(format!(
                "the leaves of batch seq {} do not match its Merkle root (leaf modified)",
                open.seq
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| {
                let mut h = Sha256::new();
                h.update([0u8]);
                h.update([i as u8]);
                h.finalize().into()
            })
            .collect()
    }

    #[test]
    fn every_path_leads_to_the_root_and_no_other_leaf_does() {
        for n in 1..=17 {
            let l = leaves(n);
            let r = root(&l).unwrap();
            for i in 0..n {
                let p = path(&l, i);
                assert_eq!(root_from_path(&l[i], i as u64, n as u64, &p), Some(r));
                // Another leaf or a changed path does not lead there (the size is in the
                // link's text, which the verifier compares).
                let other = l[(i + 1) % n];
                if n > 1 {
                    assert_ne!(root_from_path(&other, i as u64, n as u64, &p), Some(r));
                }
                if !p.is_empty() {
                    let mut bad = p.clone();
                    bad[0][0] ^= 1;
                    assert_ne!(root_from_path(&l[i], i as u64, n as u64, &bad), Some(r));
                }
            }
            assert_eq!(root_from_path(&l[0], n as u64, n as u64, &[]), None);
        }
    }

    #[test]
    fn root_follows_rfc6962_shape() {
        let l = leaves(3);
        // MTH(D[3]) = node(node(d0, d1), d2).
        assert_eq!(root(&l), Some(node_hash(&node_hash(&l[0], &l[1]), &l[2])));
        assert_eq!(root(&[]), None);
        assert_eq!(root(&l[..1]), Some(l[0]));
        // Known vector: the empty leaf is SHA-256(0x00).
        let mut h = Sha256::new();
        h.update([0u8]);
        assert_eq!(
            hex_lower(&h.finalize()),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn parse_hash_round_trips() {
        let l = leaves(1);
        assert_eq!(parse_hash(&hex_lower(&l[0])), Some(l[0]));
        assert_eq!(parse_hash("00"), None);
        assert_eq!(parse_hash(&"zz".repeat(32)), None);
    }
}
