//! Secret key material (cluster keys, the WireGuard private key): not `Copy`, so every copy is
//! an explicit `clone`; zeroed when dropped; never printed.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::base64;

/// 32 secret bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// 32 random bytes from the OS.
    pub fn random() -> Result<SecretKey, getrandom::Error> {
        let mut key = SecretKey([0; 32]);
        getrandom::fill(&mut key.0)?;
        Ok(key)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn as_bytes_mut(&mut self) -> &mut [u8; 32] {
        &mut self.0
    }

    /// Exactly 32 bytes of standard base64; the message never echoes the text.
    pub fn from_base64(text: &str) -> Result<SecretKey, String> {
        let raw =
            Zeroizing::new(base64::decode(text).map_err(|e| format!("not valid base64 ({e})"))?);
        let mut key = SecretKey([0; 32]);
        if raw.len() != key.0.len() {
            return Err(format!("decodes to {} bytes, expected 32", raw.len()));
        }
        key.0.copy_from_slice(&raw);
        Ok(key)
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::encode(&self.0))
    }
}

impl From<[u8; 32]> for SecretKey {
    fn from(bytes: [u8; 32]) -> SecretKey {
        SecretKey(bytes)
    }
}

impl Zeroize for SecretKey {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for SecretKey {}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_zeroizes() {
        let mut slot = std::mem::ManuallyDrop::new(SecretKey::from([7; 32]));
        // SAFETY: the slot is dropped once and never used as a key again; its bytes stay
        // initialized memory (a byte array has no drop glue), so reading them is defined.
        unsafe { std::ptr::drop_in_place(&mut *slot) };
        assert_eq!(slot.0, [0; 32]);
    }

    #[test]
    fn base64_round_trips_and_errors_hide_the_text() {
        let key = SecretKey::random().unwrap();
        assert_eq!(SecretKey::from_base64(&key.to_base64()).unwrap(), key);
        let e = SecretKey::from_base64("c2hvcnQ=").unwrap_err();
        assert_eq!(e, "decodes to 5 bytes, expected 32");
        let e = SecretKey::from_base64("sec%ret=").unwrap_err();
        assert!(!e.contains("sec%ret"), "{e}");
        assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
    }
}
