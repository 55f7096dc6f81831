//! Logging: the `tracing` subscriber of the binary, text or JSON lines on stderr, with the
//! OTLP span layer of [`super::layer`] beside it.
//!
//! # Invariants
//! - **A log line cannot be forged.** In the text format every control character of a field or
//!   message is escaped ([`escape_controls`]); JSON escapes every string itself. A value from
//!   outside (a reference, a kind, a party's error message) never starts a new line nor drives
//!   the terminal.
//! - The level filter is `GATEWAY_LOG` (default [`DEFAULT_FILTER`]); the OTLP layer has its own
//!   filter, so spans are exported whatever the log level.

/// `info`, but the PostgreSQL client's server notices (it logs every one at `info`, such as
/// "schema … already exists, skipping" twice for each store opened) only from `warn`.
pub const DEFAULT_FILTER: &str = "info,tokio_postgres=warn";

pub fn init_logging(json: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter =
        EnvFilter::try_from_env("GATEWAY_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        // JSON escapes every string itself.
        fmt.json().flatten_event(true).with_filter(filter).boxed()
    } else {
        fmt.fmt_fields(escaped_fields()).with_filter(filter).boxed()
    };
    // The OTLP layer has its own filter: spans are exported whatever the log level.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(crate::telemetry::layer())
        .try_init();
}

/// Text-log fields with every control character escaped (`\n` → `\\n`): values from
/// outside (a reference, a kind, an error message a party sent) can never start a forged log
/// line or drive the terminal.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let raw = format!("{value:?}");
        let text = escape_controls(&raw);
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

/// `s` with control characters written as escapes.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod log_tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A newline from outside, in a field or in the message, cannot start a log line (before,
    /// the text log printed it verbatim and a forged line followed).
    #[test]
    fn text_log_lines_cannot_be_forged() {
        let buf = Buf::default();
        let b = buf.clone();
        let sub = tracing_subscriber::fmt()
            .fmt_fields(super::escaped_fields())
            .with_ansi(false)
            .with_writer(move || b.clone())
            .finish();
        let outside = "GW1\n2026-12-05T00:00:00Z ERROR gateway: forged\u{1b}[31m";
        tracing::subscriber::with_default(sub, || {
            tracing::info!(reference = %outside, kind = outside, "refused {outside}");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains(r"GW1\n2026"), "{text}");
        assert!(text.contains("reference=GW1"), "{text}");
    }
}

#[cfg(test)]
mod filter_tests {
    use super::DEFAULT_FILTER;
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::EnvFilter;

    /// `EnvFilter::new` drops a directive it cannot read without a word: the default must read
    /// whole, at `info` overall.
    #[test]
    fn the_default_filter_reads_whole_at_info() {
        let f = EnvFilter::try_new(DEFAULT_FILTER).expect("the default filter reads");
        assert_eq!(f.max_level_hint(), Some(LevelFilter::INFO));
        assert!(f.to_string().contains("tokio_postgres=warn"), "{f}");
    }
}
