//! Plain digests for the rest of the gateway: SHA-256 as bytes and as lower-case hex.
//!
//! # Invariants
//!
//! - Computed by the system OpenSSL (`openssl::sha`), like every primitive of this crate; the
//!   one-shot SHA-256 cannot fail, so these helpers return values, not `Result`s.
//! - A digest is not a secret: to compare a digest, a MAC or a checksum received from outside
//!   with the expected one, use [`crate::util::ct_eq`] (constant time), never `==`.

use crate::util::hex;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    openssl::sha::sha256(data)
}

/// SHA-256 of `data` as 64 lower-case hex digits.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&sha256(data))
}

/// SHA-256 fed through `std::io::Write`: what a streamed canonical form or a streamed
/// attachment is written into. Writing never fails.
#[derive(Default)]
pub struct Sha256Writer {
    hasher: openssl::sha::Sha256,
    written: u64,
}

impl Sha256Writer {
    pub fn new() -> Self {
        Self::default()
    }
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
    /// The digest of everything written.
    pub fn finish(self) -> [u8; 32] {
        self.hasher.finish()
    }
}

impl std::io::Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.written += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_writer_equals_one_shot() {
        use std::io::Write;
        let mut w = Sha256Writer::new();
        w.write_all(b"a").unwrap();
        w.write_all(b"bc").unwrap();
        assert_eq!(w.written(), 3);
        assert_eq!(w.finish(), sha256(b"abc"));
    }

    #[test]
    fn sha256_hex_of_abc_is_the_fips_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
