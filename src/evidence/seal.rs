//! Bodies at rest (`full` mode): AES-256-GCM with a 96-bit random nonce; the record id is the
//! associated data, so a sealed body cannot be moved to another record unnoticed.
//!
//! Format: `GWE1` ‖ nonce (12) ‖ tag (16) ‖ ciphertext.

use openssl::rand::rand_bytes;
use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};

const MAGIC: &[u8; 4] = b"GWE1";

/// Why a body key cannot be used, or a sealed body does not open, by step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The key text is not hexadecimal.
    #[error("the evidence body key must be 64 hex digits")]
    KeyNotHex,
    /// The key is hexadecimal but not 32 bytes long.
    #[error("the evidence body key must be 64 hex digits (32 bytes)")]
    KeyLength,
    /// The bytes are not in the sealed format (too short, or another magic).
    #[error("not a sealed evidence body")]
    NotSealed,
    /// AES-GCM authentication failed: another key, another record id, or altered bytes.
    #[error("the body does not open with this key (wrong key or altered)")]
    DoesNotOpen,
}

/// A 256-bit key. Never printed.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(***)")
    }
}

impl Key {
    /// 64 hex digits.
    pub fn parse(hex_text: &str) -> Result<Self, SealError> {
        let bytes = hex::decode(hex_text.trim()).map_err(|_| SealError::KeyNotHex)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::KeyLength)?;
        Ok(Key(key))
    }

    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand_bytes(&mut nonce).expect("the OpenSSL random generator works");
        let mut tag = [0u8; 16];
        let ct = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.0,
            Some(&nonce),
            aad,
            plain,
            &mut tag,
        )
        .expect("AES-256-GCM encryption with a 32-byte key does not fail");
        let mut out = Vec::with_capacity(4 + 12 + 16 + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&tag);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < 32 || &sealed[..4] != MAGIC {
            return Err(SealError::NotSealed);
        }
        let (nonce, rest) = sealed[4..].split_at(12);
        let (tag, ct) = rest.split_at(16);
        decrypt_aead(Cipher::aes_256_gcm(), &self.0, Some(nonce), aad, ct, tag)
            .map_err(|_| SealError::DoesNotOpen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let k = Key::parse(&"ab".repeat(32)).unwrap();
        let s = k.seal(b"Ho so", b"id-1");
        assert_eq!(k.open(&s, b"id-1").unwrap(), b"Ho so");
        assert!(k.open(&s, b"id-2").is_err(), "bound to its record");
        let mut bad = s.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(k.open(&bad, b"id-1").is_err());
        assert!(Key::parse(&"cd".repeat(32))
            .unwrap()
            .open(&s, b"id-1")
            .is_err());
        assert!(Key::parse("abcd").is_err());
    }
}
