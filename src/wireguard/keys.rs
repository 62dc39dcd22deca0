//! WireGuard keys: generation (X25519), standard base64 (the form users and the
//! node metadata carry) and hex (the form the UAPI socket speaks).

use std::fmt;

use zeroize::Zeroizing;

use crate::base64;
use crate::secret::SecretKey;

/// A 32-byte public WireGuard key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

/// A WireGuard private key: a `SecretKey`, so not `Copy`, zeroed on drop and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(SecretKey);

/// A key that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

impl PrivateKey {
    /// A new private key from the OS random source, clamped as `wg genkey` does.
    pub fn generate() -> Result<PrivateKey, KeyError> {
        let mut key = SecretKey::random()
            .map_err(|e| KeyError(format!("reading random bytes for a key: {e}")))?;
        let bytes = key.as_bytes_mut();
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        Ok(PrivateKey(key))
    }

    /// The public key of this private key. The Montgomery ladder on the base point
    /// (rather than `PublicKey::from`) keeps curve25519-dalek's 30 KiB precomputed
    /// Edwards basepoint table out of the binary; it runs once per start.
    pub fn public_key(&self) -> Key {
        // The scalar is passed by value: this copy is zeroized once used.
        let scalar = Zeroizing::new(*self.0.as_bytes());
        Key(x25519_dalek::x25519(
            *scalar,
            x25519_dalek::X25519_BASEPOINT_BYTES,
        ))
    }

    /// The raw bytes (netlink attributes carry them raw).
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        self.0.to_base64()
    }

    /// The message never echoes the text.
    pub fn from_base64(text: &str) -> Result<PrivateKey, KeyError> {
        SecretKey::from_base64(text.trim())
            .map(PrivateKey)
            .map_err(|e| KeyError(format!("private key: {e}")))
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(to_hex(self.as_bytes()))
    }

    pub fn from_hex(text: &str) -> Result<PrivateKey, KeyError> {
        let mut key = PrivateKey(SecretKey::from([0; 32]));
        from_hex(text, key.0.as_bytes_mut())
            .map_err(|()| KeyError("private key: not 64 hex digits".into()))?;
        Ok(key)
    }
}

impl From<[u8; 32]> for PrivateKey {
    fn from(bytes: [u8; 32]) -> PrivateKey {
        PrivateKey(SecretKey::from(bytes))
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(public {})", self.public_key())
    }
}

fn to_hex(bytes: &[u8; 32]) -> String {
    let mut out = String::with_capacity(64);
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// Decodes 64 hex digits into `out`.
fn from_hex(text: &str, out: &mut [u8; 32]) -> Result<(), ()> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return Err(());
    }
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = hex_value(pair[0]).ok_or(())? << 4 | hex_value(pair[1]).ok_or(())?;
    }
    Ok(())
}

impl Key {
    pub fn to_base64(&self) -> String {
        base64::encode(&self.0)
    }

    pub fn from_base64(text: &str) -> Result<Key, KeyError> {
        let bytes = base64::decode(text.trim())
            .map_err(|e| KeyError(format!("key {text:?} is not valid base64 ({e})")))?;
        Self::from_slice(&bytes, text)
    }

    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    pub fn from_hex(text: &str) -> Result<Key, KeyError> {
        let mut key = Key([0; 32]);
        from_hex(text, &mut key.0)
            .map_err(|()| KeyError(format!("key {text:?} is not 64 hex digits")))?;
        Ok(key)
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

/// Shows the base64 form: a `Key` is public.
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
        let private = PrivateKey::from_hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        )
        .unwrap();
        assert_eq!(
            private.public_key().to_hex(),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn key_text_forms_round_trip() {
        let private = PrivateKey::generate().unwrap();
        assert_eq!(private.as_bytes()[0] & 7, 0);
        assert_eq!(private.as_bytes()[31] & 0xc0, 0x40);
        let b64 = private.to_base64();
        assert_eq!(b64.len(), 44);
        assert_eq!(PrivateKey::from_base64(&b64).unwrap(), private);
        assert_eq!(PrivateKey::from_hex(&private.to_hex()).unwrap(), private);
        let key = private.public_key();
        assert_ne!(&key.0, private.as_bytes());
        assert_eq!(Key::from_base64(&key.to_base64()).unwrap(), key);
        assert_eq!(Key::from_hex(&key.to_hex()).unwrap(), key);
        assert_eq!(Key::from_hex(&key.to_hex().to_uppercase()).unwrap(), key);
    }

    #[test]
    fn private_keys_are_never_printed() {
        let private = PrivateKey::generate().unwrap();
        let shown = format!("{private:?}");
        assert!(!shown.contains(&*private.to_base64()), "{shown}");
        assert!(!shown.contains(&*private.to_hex()), "{shown}");
        assert!(shown.contains(&private.public_key().to_base64()), "{shown}");
    }

    #[test]
    fn private_key_errors_do_not_echo_the_key() {
        let text = "ab".repeat(31);
        let e = PrivateKey::from_hex(&text).unwrap_err().to_string();
        assert!(!e.contains(&text), "{e}");
        let e = PrivateKey::from_base64("c2VjcmV0").unwrap_err().to_string();
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }

    #[test]
    fn key_decoding_rejects_wrong_lengths() {
        assert!(Key::from_base64("Zm9vYmFy").is_err());
        assert!(Key::from_hex("00").is_err());
        assert!(Key::from_hex(&"g".repeat(64)).is_err());
    }
}
