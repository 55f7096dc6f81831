//! The limits of every field the gateway takes from outside, in one place.
//!
//! # Invariants
//! - Each edge (inbound events, payment orders, provider callbacks) checks its fields against
//!   these limits before anything is stored or published, and answers 400 naming the field.
//! - A limit comes from the party's contract where it has one (`MaThamChieu` ≤ 20 characters,
//!   CONTRACTS.md §3); otherwise it is generous for real data and small enough that no field
//!   can carry a document. `docs/security.md` lists them.

/// Longest ordering key of an inbound event (a dossier code, a procedure code…).
pub const MAX_KEY_LEN: usize = 200;
/// Longest event `kind` (kinds are short dotted names such as `dossier.upserted`).
pub const MAX_KIND_LEN: usize = 64;
/// Longest dossier code on the payment endpoints. The portal's `MaHoSo` values are short
/// (`000.00.12.H56-241205-0001`, about 25 characters).
pub const MAX_DOSSIER_CODE_LEN: usize = 64;
/// Longest fee item code (`MaPhiLePhi`).
pub const MAX_FEE_CODE_LEN: usize = 64;
/// Most fees in one payment request.
pub const MAX_FEES_PER_REQUEST: usize = 100;

/// A field outside its limit. The message names the field, so an edge can answer 400 with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A code (dossier, fee item) is empty, too long or has a character outside the plain set.
    #[error("{field}: must be 1 to {max} of A-Z, a-z, 0-9, '.', '_', '-', '/'")]
    Code { field: String, max: usize },
}

/// A dossier code: 1 to [`MAX_DOSSIER_CODE_LEN`] of `A-Z a-z 0-9 . _ - /`.
pub fn dossier_code(field: &str, v: &str) -> Result<(), LimitError> {
    code(field, v, MAX_DOSSIER_CODE_LEN)
}

/// A fee item code: 1 to [`MAX_FEE_CODE_LEN`] of `A-Z a-z 0-9 . _ - /`.
pub fn fee_code(field: &str, v: &str) -> Result<(), LimitError> {
    code(field, v, MAX_FEE_CODE_LEN)
}

fn code(field: &str, v: &str, max: usize) -> Result<(), LimitError> {
    let ok = !v.is_empty()
        && v.len() <= max
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(LimitError::Code {
            field: field.to_owned(),
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_bounded_and_plain() {
        assert!(dossier_code("dossier_code", "000.00.12.H56-241205-0001").is_ok());
        assert!(dossier_code("dossier_code", "HS/2026/1").is_ok());
        for bad in ["", " ", "a b", "a\nb", "mã", "x;drop", "<x>"] {
            let e = dossier_code("dossier_code", bad).unwrap_err().to_string();
            assert!(e.starts_with("dossier_code: "), "{e}");
        }
        assert!(dossier_code("d", &"a".repeat(MAX_DOSSIER_CODE_LEN)).is_ok());
        assert!(dossier_code("d", &"a".repeat(MAX_DOSSIER_CODE_LEN + 1)).is_err());
        assert!(fee_code("fees[0].code", &"a".repeat(5000)).is_err());
    }
}
