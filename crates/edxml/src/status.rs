//! The status table of the document axis, once: each status with its numeric `StatusCode`
//! (QCVN 102 status messages) and the word the axis's `updateStatus` operation uses.
//!
//! Invariants:
//! - [`TABLE`] is the only place a code or a word is spelt; [`Status::code`],
//!   [`Status::word`], [`Status::from_code`] and [`Status::from_word`] read it.
//! - Codes are two digits as sent (`"01"`); a code not in the table is refused by the parser.
//! - `fail` is an axis word without a numeric code, and 15/16 are codes without an axis word
//!   (CONTRACTS.md §5 lists them so) [open]: those cells are `None`.

use serde::{Deserialize, Serialize};

/// The statuses of a document on the axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Received,
    Rejected,
    Accepted,
    Assigned,
    Processing,
    Finished,
    Cancelled,
    ChangeAccepted,
    ChangeRejected,
    Failed,
}

/// One row: the status, its `StatusCode`, its axis word, what it means.
pub struct Row {
    pub status: Status,
    pub code: Option<&'static str>,
    pub word: Option<&'static str>,
    pub meaning: &'static str,
}

/// The table.
pub const TABLE: [Row; 10] = [
    Row {
        status: Status::Received,
        code: Some("01"),
        word: Some("inbox"),
        meaning: "received",
    },
    Row {
        status: Status::Rejected,
        code: Some("02"),
        word: Some("rejection"),
        meaning: "rejected",
    },
    Row {
        status: Status::Accepted,
        code: Some("03"),
        word: Some("acceptance"),
        meaning: "accepted",
    },
    Row {
        status: Status::Assigned,
        code: Some("04"),
        word: Some("assignment"),
        meaning: "assigned",
    },
    Row {
        status: Status::Processing,
        code: Some("05"),
        word: Some("processing"),
        meaning: "in processing",
    },
    Row {
        status: Status::Finished,
        code: Some("06"),
        word: Some("done"),
        meaning: "finished",
    },
    Row {
        status: Status::Cancelled,
        code: Some("13"),
        word: Some("cancellation"),
        meaning: "cancelled",
    },
    Row {
        status: Status::ChangeAccepted,
        code: Some("15"),
        word: None,
        meaning: "change accepted",
    },
    Row {
        status: Status::ChangeRejected,
        code: Some("16"),
        word: None,
        meaning: "change rejected",
    },
    Row {
        status: Status::Failed,
        code: None,
        word: Some("fail"),
        meaning: "delivery failed",
    },
];

impl Status {
    fn row(self) -> &'static Row {
        TABLE
            .iter()
            .find(|r| r.status == self)
            .expect("every status has a row")
    }
    /// The numeric `StatusCode`, if this status has one.
    pub fn code(self) -> Option<&'static str> {
        self.row().code
    }
    /// The axis's `updateStatus` word, if this status has one.
    pub fn word(self) -> Option<&'static str> {
        self.row().word
    }
    pub fn meaning(self) -> &'static str {
        self.row().meaning
    }
    pub fn from_code(code: &str) -> Option<Status> {
        TABLE
            .iter()
            .find(|r| r.code == Some(code))
            .map(|r| r.status)
    }
    pub fn from_word(word: &str) -> Option<Status> {
        TABLE
            .iter()
            .find(|r| r.word == Some(word))
            .map(|r| r.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for r in &TABLE {
            assert_eq!(r.status.row().meaning, r.meaning);
            if let Some(c) = r.code {
                assert_eq!(Status::from_code(c), Some(r.status));
                assert_eq!(c.len(), 2);
            }
            if let Some(w) = r.word {
                assert_eq!(Status::from_word(w), Some(r.status));
            }
            assert!(r.code.is_some() || r.word.is_some());
        }
        assert_eq!(Status::from_code("1"), None);
        assert_eq!(Status::from_code("07"), None);
        assert_eq!(Status::from_word("Done"), None);
        let codes: Vec<_> = TABLE.iter().filter_map(|r| r.code).collect();
        assert_eq!(
            codes,
            ["01", "02", "03", "04", "05", "06", "13", "15", "16"]
        );
    }
}
