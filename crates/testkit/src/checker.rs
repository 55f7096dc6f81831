//! A ledger checker in the style of Jepsen's queue checker, for the fault-injection suite.
//!
//! # What goes in
//!
//! - **Sent events** ([`Sent`]): every event the test offered the gateway, each with a unique
//!   id, its dossier, a per-dossier sequence (the event's `version`: 1, 2, 3 … in the order
//!   the test sends them) and its idempotency key (`<dossier>@<sequence>`, what the gateway's
//!   connectors derive from the natural key). An event is **acked** when the gateway answered
//!   `202 Accepted`, **indeterminate** when the answer never came (connection cut, gateway
//!   killed, timeout): it may or may not have been accepted, so it may or may not take effect;
//!   an event answered with a refusal is not recorded at all.
//! - **Calls** ([`Call`]): every request the sandbox *accepted*, in arrival order, with the
//!   idempotency key, dossier and sequence it carried. Refused calls (injected faults) are only
//!   counted ([`Input::refused_calls`]).
//! - **Dead letters** ([`Dead`]): what the gateway's store holds, with dossier, sequence and
//!   reason.
//!
//! # Effects
//!
//! The two sandboxes apply calls differently, and the checker follows each ([`Semantics`]):
//!
//! - [`Semantics::IdempotencyKey`] (the recording sink, generic `http` connector): the
//!   receiver applies an idempotency key once. The *first* accepted call of a key is the
//!   **effect**; later calls with the same key are **duplicate calls** (retries the receiver
//!   absorbs), not duplicate effects.
//! - [`Semantics::LastWriteWins`] (the DVCQG portal, `DongBoHoSoMC`): the portal has no
//!   idempotency key; every accepted call overwrites the dossier with the version it carries.
//!   A call carrying the version the dossier already holds changes nothing: a duplicate call.
//!   Any other accepted call is an effect.
//!
//! # Figures (the definitions the suite is judged by)
//!
//! - **effect of a (dossier, sequence)**: as above. An effect is *attributed* to the sent event
//!   with that dossier and sequence.
//! - **duplicate effect**: a second effect attributed to the same (dossier, sequence). (With an
//!   idempotency-key receiver this needs two different keys for one event; at the portal it is
//!   a version applied again after the dossier had moved on from it.)
//! - **older-after-newer**: an effect of sequence `s` on a dossier that already had an effect
//!   of a sequence `s' > s` — per dossier, an older version applied after a newer one.
//! - **superseded**: an acked event with no effect of its own, but with an effect of a newer
//!   sequence of its dossier. The gateway coalesces versions of one dossier (only the newest
//!   waiting snapshot is sent), so this is legitimate and not a loss.
//! - **lost**: an acked event such that *no effect of its dossier with a sequence ≥ its own*
//!   ever arrived and *no dead letter of its dossier with a sequence ≥ its own* exists. That is:
//!   neither it nor anything that replaces it reached the party, and the gateway does not
//!   account for it as a dead letter either.
//! - **dead-lettered**: acked events covered by a dead letter (their own or a newer version's)
//!   and not by an effect, counted by the dead letter's reason.
//! - **unexpected**: effects attributed to no sent event (acked or indeterminate): a phantom.
//! - **calls / retries**: calls = accepted + refused calls at the sandbox; retries = calls −
//!   effects (every call beyond the one that took effect).
//!
//! A scenario passes when lost = 0, duplicate effects = 0, older-after-newer = 0 and
//! unexpected = 0 ([`Report::ok`]).

use std::collections::{BTreeMap, BTreeSet};

/// One event offered to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub id: String,
    pub dossier: String,
    pub seq: i64,
    pub idempotency_key: String,
    /// `true` for `202 Accepted`, `false` for indeterminate (no answer).
    pub acked: bool,
}

impl Sent {
    /// The idempotency key the gateway derives for a dossier version.
    pub fn key_for(dossier: &str, seq: i64) -> String {
        format!("{dossier}@{seq}")
    }
}

/// One call the sandbox accepted, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub idempotency_key: String,
    pub dossier: String,
    pub seq: i64,
}

/// One dead letter in the gateway's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dead {
    pub dossier: String,
    /// `None` when the dead letter's envelope carries no version (or is not an envelope).
    pub seq: Option<i64>,
    pub reason: String,
}

/// How the receiving party applies calls (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantics {
    IdempotencyKey,
    LastWriteWins,
}

/// Everything the checker reads.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub sent: Vec<Sent>,
    pub calls: Vec<Call>,
    pub refused_calls: u64,
    pub dead: Vec<Dead>,
}

/// The checker's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub acked: u64,
    pub indeterminate: u64,
    pub calls: u64,
    pub retries: u64,
    pub effects: u64,
    pub duplicate_calls: u64,
    pub duplicate_effects: u64,
    pub older_after_newer: u64,
    pub superseded: u64,
    /// Acked events lost (dossier@sequence), see the module doc.
    pub lost: Vec<String>,
    /// Acked events covered only by a dead letter, by reason.
    pub dead_lettered: BTreeMap<String, u64>,
    /// Dead letters in the store (also those matching no sent event, e.g. garbage on the queue).
    pub dead_letters: u64,
    pub unexpected: u64,
    /// Examples, for the failure message.
    pub examples: Vec<String>,
}

impl Report {
    /// lost = 0, duplicate effects = 0, older-after-newer = 0, unexpected = 0.
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.duplicate_effects == 0
            && self.older_after_newer == 0
            && self.unexpected == 0
    }

    /// One line of figures.
    pub fn line(&self) -> String {
        let dead: u64 = self.dead_lettered.values().sum();
        let reasons = self
            .dead_lettered
            .iter()
            .map(|(r, n)| format!("{n}× {r}"))
            .collect::<Vec<_>>()
            .join("; ");
        format!(
            "acked {} (+{} indeterminate), effects {}, superseded {}, lost {}, duplicate effects {}, older-after-newer {}, unexpected {}, dead-lettered {dead}{}{} (dead letters in store {}), calls {}, retries {}, duplicate calls {}",
            self.acked,
            self.indeterminate,
            self.effects,
            self.superseded,
            self.lost.len(),
            self.duplicate_effects,
            self.older_after_newer,
            self.unexpected,
            if reasons.is_empty() { "" } else { " [" },
            if reasons.is_empty() {
                String::new()
            } else {
                format!("{reasons}]")
            },
            self.dead_letters,
            self.calls,
            self.retries,
            self.duplicate_calls,
        )
    }

    /// Print the figures of `scenario` and panic unless [`Report::ok`].
    pub fn print_and_assert(&self, scenario: &str) {
        println!("FAULTS {scenario}: {}", self.line());
        assert!(
            self.ok(),
            "{scenario}: the ledger check failed: {}; examples: {:?}; lost e.g. {:?}",
            self.line(),
            self.examples,
            self.lost.iter().take(10).collect::<Vec<_>>()
        );
    }
}

/// Check `input` under `semantics`.
pub fn check(input: &Input, semantics: Semantics) -> Report {
    let mut r = Report {
        acked: input.sent.iter().filter(|s| s.acked).count() as u64,
        indeterminate: input.sent.iter().filter(|s| !s.acked).count() as u64,
        calls: input.calls.len() as u64 + input.refused_calls,
        dead_letters: input.dead.len() as u64,
        ..Default::default()
    };
    let known: BTreeSet<(&str, i64)> = input
        .sent
        .iter()
        .map(|s| (s.dossier.as_str(), s.seq))
        .collect();
    let example = |r: &mut Report, e: String| {
        if r.examples.len() < 10 {
            r.examples.push(e);
        }
    };

    // Effects, in arrival order.
    let mut applied_keys = BTreeSet::new();
    let mut state: BTreeMap<&str, i64> = BTreeMap::new(); // LastWriteWins: current version
    let mut newest: BTreeMap<&str, i64> = BTreeMap::new(); // newest effect so far
    let mut effects: BTreeMap<(&str, i64), u64> = BTreeMap::new();
    for c in &input.calls {
        let is_effect = match semantics {
            Semantics::IdempotencyKey => applied_keys.insert(c.idempotency_key.as_str()),
            Semantics::LastWriteWins => state.insert(c.dossier.as_str(), c.seq) != Some(c.seq),
        };
        if !is_effect {
            r.duplicate_calls += 1;
            continue;
        }
        r.effects += 1;
        if !known.contains(&(c.dossier.as_str(), c.seq)) {
            r.unexpected += 1;
            example(&mut r, format!("unexpected effect {}@{}", c.dossier, c.seq));
        }
        let n = effects.entry((c.dossier.as_str(), c.seq)).or_default();
        *n += 1;
        if *n > 1 {
            r.duplicate_effects += 1;
            example(&mut r, format!("duplicate effect {}@{}", c.dossier, c.seq));
        }
        let top = newest.entry(c.dossier.as_str()).or_insert(c.seq);
        if c.seq < *top {
            r.older_after_newer += 1;
            example(
                &mut r,
                format!("{}@{} applied after @{}", c.dossier, c.seq, *top),
            );
        }
        *top = (*top).max(c.seq);
    }
    r.retries = r.calls.saturating_sub(r.effects);

    // Newest dead letter per dossier (and its reason).
    let mut dead_top: BTreeMap<&str, (i64, &str)> = BTreeMap::new();
    for d in &input.dead {
        let seq = d.seq.unwrap_or(i64::MAX);
        let e = dead_top
            .entry(d.dossier.as_str())
            .or_insert((seq, d.reason.as_str()));
        if seq > e.0 {
            *e = (seq, d.reason.as_str());
        }
    }

    for s in input.sent.iter().filter(|s| s.acked) {
        let own = effects.contains_key(&(s.dossier.as_str(), s.seq));
        let by_effect = newest.get(s.dossier.as_str()).is_some_and(|&n| n >= s.seq);
        if own {
            continue;
        }
        if by_effect {
            r.superseded += 1;
            continue;
        }
        match dead_top.get(s.dossier.as_str()) {
            Some(&(n, reason)) if n >= s.seq => {
                *r.dead_lettered.entry(short_reason(reason)).or_default() += 1;
            }
            _ => r.lost.push(format!("{}@{}", s.dossier, s.seq)),
        }
    }
    r
}

/// A dead letter's reason without its variable tail (for counting by reason).
fn short_reason(reason: &str) -> String {
    let r = reason.split(':').next().unwrap_or(reason).trim();
    r.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(d: &str, seq: i64, acked: bool) -> Sent {
        Sent {
            id: format!("{d}-{seq}"),
            dossier: d.into(),
            seq,
            idempotency_key: Sent::key_for(d, seq),
            acked,
        }
    }

    fn call(d: &str, seq: i64) -> Call {
        Call {
            idempotency_key: Sent::key_for(d, seq),
            dossier: d.into(),
            seq,
        }
    }

    #[test]
    fn clean_history_with_coalescing_and_retries() {
        let input = Input {
            sent: vec![
                sent("a", 1, true),
                sent("a", 2, true),
                sent("a", 3, true),
                sent("b", 1, false),
                sent("c", 1, true),
            ],
            // a@2 coalesced away; a@3 called twice (a retry after a lost answer).
            calls: vec![call("a", 1), call("a", 3), call("a", 3), call("b", 1)],
            refused_calls: 4,
            dead: vec![Dead {
                dossier: "c".into(),
                seq: Some(1),
                reason: "permanent: HTTP 400 refused".into(),
            }],
        };
        for sem in [Semantics::IdempotencyKey, Semantics::LastWriteWins] {
            let r = check(&input, sem);
            assert!(r.ok(), "{r:?}");
            assert_eq!(r.effects, 3);
            assert_eq!(r.superseded, 1);
            assert_eq!(r.duplicate_calls, 1);
            assert_eq!(r.calls, 8);
            assert_eq!(r.retries, 5);
            assert_eq!(r.indeterminate, 1);
            assert_eq!(r.dead_lettered.get("permanent"), Some(&1));
        }
    }

    #[test]
    fn finds_lost_reordered_duplicated_and_phantom_effects() {
        let input = Input {
            sent: vec![
                sent("a", 1, true),
                sent("a", 2, true),
                sent("b", 1, true),
                sent("b", 2, true),
            ],
            calls: vec![
                call("a", 2),
                call("a", 1), // older after newer
                call("b", 1),
                call("x", 9), // phantom
                Call {
                    idempotency_key: "other-key".into(),
                    dossier: "b".into(),
                    seq: 1,
                }, // the same event under a second key: a duplicate effect
            ],
            refused_calls: 0,
            dead: vec![],
        };
        let r = check(&input, Semantics::IdempotencyKey);
        assert_eq!(r.older_after_newer, 1);
        assert_eq!(r.unexpected, 1);
        assert_eq!(r.duplicate_effects, 1);
        assert_eq!(r.lost, vec!["b@2".to_string()]);
        assert!(!r.ok());

        // At the portal an old version re-sent after a newer one overwrites it.
        let input = Input {
            sent: vec![sent("a", 1, true), sent("a", 2, true)],
            calls: vec![call("a", 1), call("a", 2), call("a", 2), call("a", 1)],
            ..Default::default()
        };
        let r = check(&input, Semantics::LastWriteWins);
        assert_eq!(r.duplicate_calls, 1);
        assert_eq!(r.older_after_newer, 1);
        assert_eq!(r.duplicate_effects, 1);
        // With an idempotency key the late a@1 is absorbed.
        let r = check(&input, Semantics::IdempotencyKey);
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.duplicate_calls, 2);
    }
}
