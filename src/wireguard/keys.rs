//! WireGuard keys: generation (X25519), standard base64 (the form users and the
//! node metadata carry) and hex (the form the UAPI socket speaks).

use std::fmt;

use crate::base64;

/// A 32-byte WireGuard key: private, public or preshared.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

impl zeroize::Zeroize for Key {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

/// A key that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

impl Key {
    /// A new private key from the OS random source, clamped as `wg genkey` does.
    pub fn generate() -> Result<Key, KeyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| KeyError(format!("reading random bytes for a key: {e}")))?;
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        Ok(Key(bytes))
    }

    /// The public key of this private key. The Montgomery ladder on the base point
    /// (rather than `PublicKey::from`) keeps curve25519-dalek's 30 KiB precomputed
    /// Edwards basepoint table out of the binary; it runs once per start.
    pub fn public_key(&self) -> Key {
        Key(x25519_dalek::x25519(
            self.0,
            x25519_dalek::X25519_BASEPOINT_BYTES,
        ))
    }

    pub fn to_base64(&self) -> String {
        base64::encode(&self.0)
    }

    pub fn from_base64(text: &str) -> Result<Key, KeyError> {
        let bytes = base64::decode(text.trim())
            .map_err(|e| KeyError(format!("key {text:?} is not valid base64 ({e})")))?;
        Self::from_slice(&bytes, text)
    }

    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        out
    }

    pub fn from_hex(text: &str) -> Result<Key, KeyError> {
        let bad = || KeyError(format!("key {text:?} is not 64 hex digits"));
        let digits = text.as_bytes();
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut key = [0u8; 32];
        for (out, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
            let hi = hex_value(pair[0]).ok_or_else(bad)?;
            let lo = hex_value(pair[1]).ok_or_else(bad)?;
            *out = hi << 4 | lo;
        }
        Ok(Key(key))
    }

    /// A key from exactly 32 raw bytes (netlink attributes carry them raw).
    pub fn from_slice(bytes: &[u8], what: &str) -> Result<Key, KeyError> {
        <[u8; 32]>::try_from(bytes)
            .map(Key)
            .map_err(|_| KeyError(format!("key {what:?} is {} bytes, not 32", bytes.len())))
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }
}

/// Shows the base64 form: keys in logs are public ones; private keys live only in
/// `DeviceConfig`, whose Debug hides them.
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.to_base64())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_matches_rfc7748_vector() {
        let private =
            Key::from_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap();
        assert_eq!(
            private.public_key().to_hex(),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn key_text_forms_round_trip() {
        let key = Key::generate().unwrap();
        assert_eq!(key.0[0] & 7, 0);
        assert_eq!(key.0[31] & 0xc0, 0x40);
        let b64 = key.to_base64();
        assert_eq!(b64.len(), 44);
        assert_eq!(Key::from_base64(&b64).unwrap(), key);
        assert_eq!(Key::from_hex(&key.to_hex()).unwrap(), key);
        assert_eq!(Key::from_hex(&key.to_hex().to_uppercase()).unwrap(), key);
        assert_ne!(key.public_key(), key);
    }

    #[test]
    fn key_decoding_rejects_wrong_lengths() {
        assert!(Key::from_base64("Zm9vYmFy").is_err());
        assert!(Key::from_hex("00").is_err());
        assert!(Key::from_hex(&"g".repeat(64)).is_err());
    }
}
