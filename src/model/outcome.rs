//! What an answer means: the classification of every exchange with a party, and the bounded
//! reasons that label it. (The retry *policy*, when to try again, is the route runtime's:
//! [`crate::runtime::retry`].)
//!
//! # Invariants
//! - [`classify`] is the one function that decides what an answer means; every decision
//!   carries a [`Reason`] from a bounded set (it is a metric label: no free text, no personal
//!   data).
//! - Retryable: timeouts, connection errors, 5xx, 408, 429 (honouring `Retry-After`), and a
//!   body-level error a connector says is transient. Permanent: any other 4xx (the party
//!   refused the content; retrying cannot help) and body-level refusals.
//! - [`health`] is the one function that decides what an exchange says about the destination
//!   (the circuit breaker's input): only transport errors, timeouts and 5xx say it is down;
//!   429 is back-pressure from a working service (it slows the adapter, see
//!   [`crate::transport::client`]) and says nothing; any other answer — success, a business
//!   refusal, an expired session — comes from a working service.

use std::time::Duration;

/// How a transport attempt failed before any answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    Timeout,
    Connect,
    /// The connection broke mid-exchange (reset, closed).
    Broken,
    /// Building the request failed (a bug or a bad adapter setting).
    Request,
}

/// What came back from one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Http {
        status: u16,
        /// Parsed `Retry-After` (seconds or HTTP date).
        retry_after: Option<Duration>,
        /// The start of the body, for the ledger (capped; no personal data is logged from it).
        body: String,
    },
    Transport {
        failure: TransportFailure,
        detail: String,
    },
}

impl Answer {
    pub fn status(&self) -> Option<u16> {
        match self {
            Answer::Http { status, .. } => Some(*status),
            Answer::Transport { .. } => None,
        }
    }
    pub fn summary(&self) -> String {
        match self {
            Answer::Http { status, body, .. } => format!("HTTP {status}: {body}"),
            Answer::Transport { failure, detail } => format!("{failure:?}: {detail}"),
        }
    }
}

/// What one HTTP exchange says about the destination's health: the circuit breaker's input.
/// A batch is one exchange, so only one of its items carries its health; the others are
/// [`Health::Silent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It answered as a working service does (success, business refusal, session expiry).
    Up,
    /// No usable answer: a transport error, a timeout or a 5xx.
    Down,
    /// Says nothing: 429 (back-pressure), a request never sent, or an item whose batch's
    /// exchange is reported by another item.
    Silent,
}

/// What an exchange's answer says about the destination (see [`Health`]).
pub fn health(answer: &Answer) -> Health {
    match answer {
        Answer::Transport { failure, .. } => match failure {
            TransportFailure::Timeout | TransportFailure::Connect | TransportFailure::Broken => {
                Health::Down
            }
            TransportFailure::Request => Health::Silent,
        },
        Answer::Http { status, .. } => match *status {
            429 => Health::Silent,
            408 | 500..=599 => Health::Down,
            _ => Health::Up,
        },
    }
}

/// Bounded reasons (metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Accepted,
    Timeout,
    ConnectionError,
    ServerError,
    RateLimited,
    /// HTTP 200 (or 2xx) whose body says error, transient.
    BodyErrorRetryable,
    /// HTTP 200 whose body says the content is refused.
    BodyErrorPermanent,
    ClientError,
    Unauthorized,
    RequestBuild,
    MalformedEnvelope,
    Superseded,
    RetriesExhausted,
    BrokerDeliveryLimit,
    /// Deferred without calling the destination: its circuit breaker is open.
    CircuitOpen,
    /// Deferred without calling the destination: the envelope acts on the destination's copy
    /// of its dossier, and the dossier's snapshot is still on its way there.
    AwaitingDossier,
    /// Dead-lettered with its dossier: the dossier's snapshot was dead-lettered, so what acts
    /// on it cannot be delivered either (replay them together).
    DossierDeadLettered,
    /// Deferred without calling the destination: another holder's claim on this dossier at
    /// this destination is live (another lane or instance is sending for it).
    ClaimBusy,
    /// An exchange in doubt could not be checked with the party's look-up: retried later,
    /// never re-sent blindly.
    LookupFailed,
    /// Dead-lettered at once: handling it panicked (a bug), so the queue moves on and an
    /// operator sees it instead of a crash loop.
    Panic,
    /// Dead-lettered without calling the agency: its subscription is disabled (after a 410
    /// or failing longer than its `disable_after`); replayed once it is enabled again.
    SubscriptionDisabled,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Accepted => "accepted",
            Reason::Timeout => "timeout",
            Reason::ConnectionError => "connection_error",
            Reason::ServerError => "server_error",
            Reason::RateLimited => "rate_limited",
            Reason::BodyErrorRetryable => "body_error_retryable",
            Reason::BodyErrorPermanent => "body_error_permanent",
            Reason::ClientError => "client_error",
            Reason::Unauthorized => "unauthorized",
            Reason::RequestBuild => "request_build",
            Reason::MalformedEnvelope => "malformed_envelope",
            Reason::Superseded => "superseded",
            Reason::RetriesExhausted => "retries_exhausted",
            Reason::BrokerDeliveryLimit => "broker_delivery_limit",
            Reason::CircuitOpen => "circuit_open",
            Reason::AwaitingDossier => "awaiting_dossier",
            Reason::DossierDeadLettered => "dossier_dead_lettered",
            Reason::ClaimBusy => "claim_busy",
            Reason::LookupFailed => "lookup_failed",
            Reason::Panic => "panic",
            Reason::SubscriptionDisabled => "subscription_disabled",
        }
    }
}

/// What to do with an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Delivered,
    Retry {
        reason: Reason,
        not_before: Option<Duration>,
    },
    Permanent {
        reason: Reason,
    },
    Superseded,
}

/// A connector's reading of a 2xx body: `None` = the body says success.
pub type BodyVerdict = Option<Decision>;

/// The one classification function. `body_verdict` is the connector's reading of a 2xx body
/// (for parties that answer HTTP 200 with an error code inside).
pub fn classify(answer: &Answer, body_verdict: impl FnOnce(&str) -> BodyVerdict) -> Decision {
    match answer {
        Answer::Transport { failure, .. } => match failure {
            TransportFailure::Timeout => Decision::Retry {
                reason: Reason::Timeout,
                not_before: None,
            },
            TransportFailure::Connect | TransportFailure::Broken => Decision::Retry {
                reason: Reason::ConnectionError,
                not_before: None,
            },
            TransportFailure::Request => Decision::Permanent {
                reason: Reason::RequestBuild,
            },
        },
        Answer::Http {
            status,
            retry_after,
            body,
        } => match *status {
            200..=299 => body_verdict(body).unwrap_or(Decision::Delivered),
            429 => Decision::Retry {
                reason: Reason::RateLimited,
                not_before: *retry_after,
            },
            408 => Decision::Retry {
                reason: Reason::Timeout,
                not_before: *retry_after,
            },
            // 401/403 are usually a credential problem that a config fix cures: retry (within
            // the budget) rather than throw the message away (Vector #10870).
            401 | 403 => Decision::Retry {
                reason: Reason::Unauthorized,
                not_before: *retry_after,
            },
            500..=599 => Decision::Retry {
                reason: Reason::ServerError,
                not_before: *retry_after,
            },
            _ => Decision::Permanent {
                reason: Reason::ClientError,
            },
        },
    }
}

/// Parse a `Retry-After` value: delta seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(7 * 86400)));
    }
    let fmt = time::format_description::well_known::Rfc2822;
    let when = time::OffsetDateTime::parse(v, &fmt).ok()?;
    let now = time::OffsetDateTime::now_utc();
    let d = when - now;
    Some(if d.is_negative() {
        Duration::ZERO
    } else {
        Duration::from_millis(d.whole_milliseconds() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> Answer {
        Answer::Http {
            status,
            retry_after: None,
            body: String::new(),
        }
    }

    #[test]
    fn classification_table() {
        let ok = |_: &str| None;
        assert_eq!(classify(&http(200), ok), Decision::Delivered);
        assert_eq!(classify(&http(204), ok), Decision::Delivered);
        assert!(matches!(
            classify(&http(500), ok),
            Decision::Retry {
                reason: Reason::ServerError,
                ..
            }
        ));
        assert!(matches!(
            classify(&http(503), ok),
            Decision::Retry {
                reason: Reason::ServerError,
                ..
            }
        ));
        assert!(matches!(
            classify(&http(400), ok),
            Decision::Permanent {
                reason: Reason::ClientError
            }
        ));
        assert!(matches!(
            classify(&http(422), ok),
            Decision::Permanent { .. }
        ));
        assert!(matches!(
            classify(&http(401), ok),
            Decision::Retry {
                reason: Reason::Unauthorized,
                ..
            }
        ));
        let ra = Answer::Http {
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
            body: String::new(),
        };
        assert_eq!(
            classify(&ra, ok),
            Decision::Retry {
                reason: Reason::RateLimited,
                not_before: Some(Duration::from_secs(7))
            }
        );
        let t = Answer::Transport {
            failure: TransportFailure::Timeout,
            detail: String::new(),
        };
        assert!(matches!(
            classify(&t, ok),
            Decision::Retry {
                reason: Reason::Timeout,
                ..
            }
        ));
        let c = Answer::Transport {
            failure: TransportFailure::Connect,
            detail: String::new(),
        };
        assert!(matches!(
            classify(&c, ok),
            Decision::Retry {
                reason: Reason::ConnectionError,
                ..
            }
        ));
    }

    #[test]
    fn http_200_with_error_body_is_not_delivered() {
        let a = Answer::Http {
            status: 200,
            retry_after: None,
            body: "{\"error_code\":\"-1\"}".into(),
        };
        let d = classify(&a, |b| {
            b.contains("-1").then_some(Decision::Permanent {
                reason: Reason::BodyErrorPermanent,
            })
        });
        assert_eq!(
            d,
            Decision::Permanent {
                reason: Reason::BodyErrorPermanent
            }
        );
    }

    #[test]
    fn health_table() {
        assert_eq!(health(&http(200)), Health::Up);
        assert_eq!(
            health(&http(400)),
            Health::Up,
            "a refusal comes from a working service"
        );
        assert_eq!(health(&http(401)), Health::Up);
        assert_eq!(
            health(&http(429)),
            Health::Silent,
            "back-pressure is not an outage"
        );
        assert_eq!(health(&http(500)), Health::Down);
        assert_eq!(health(&http(503)), Health::Down);
        assert_eq!(health(&http(408)), Health::Down);
        for (f, h) in [
            (TransportFailure::Timeout, Health::Down),
            (TransportFailure::Connect, Health::Down),
            (TransportFailure::Broken, Health::Down),
            (TransportFailure::Request, Health::Silent),
        ] {
            let a = Answer::Transport {
                failure: f,
                detail: String::new(),
            };
            assert_eq!(health(&a), h, "{f:?}");
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
