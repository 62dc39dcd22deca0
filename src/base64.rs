//! Standard base64 (RFC 4648 alphabet, with padding), as Go's `base64.StdEncoding` writes it.
//! Used for the cluster key, the state file's byte fields and WireGuard public keys.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a string is not valid standard base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base64Error {
    /// Length is not a multiple of 4 (standard encoding is always padded).
    Length(usize),
    /// A byte outside the alphabet, at this offset.
    Byte(usize),
    /// Padding in the wrong place.
    Padding,
}

impl std::fmt::Display for Base64Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Base64Error::Length(n) => write!(f, "length {n} is not a multiple of 4"),
            Base64Error::Byte(at) => write!(f, "invalid character at offset {at}"),
            Base64Error::Padding => write!(f, "invalid padding"),
        }
    }
}

impl std::error::Error for Base64Error {}

pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes as Go's `StdEncoding` does: padding required, `\r` and `\n` ignored, unused trailing
/// bits ignored (so every key Go accepts is accepted here).
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    // Zeroized: the text may be a key.
    let bytes = zeroize::Zeroizing::new(
        text.bytes()
            .filter(|&c| c != b'\r' && c != b'\n')
            .collect::<Vec<u8>>(),
    );
    if !bytes.len().is_multiple_of(4) {
        return Err(Base64Error::Length(bytes.len()));
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let groups = bytes.len() / 4;
    for (g, quad) in bytes.chunks_exact(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && g + 1 != groups) {
            return Err(Base64Error::Padding);
        }
        let mut n = 0u32;
        for (i, &c) in quad.iter().enumerate() {
            let v = if i >= 4 - pad {
                0
            } else {
                value(c).ok_or(Base64Error::Byte(g * 4 + i))?
            };
            n = (n << 6) | v;
        }
        let full = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&full[..3 - pad]);
    }
    Ok(out)
}

/// Decodes a key that must be exactly 32 bytes; the message says what was wrong.
pub fn decode_key(text: &str) -> Result<[u8; 32], String> {
    let raw = decode(text).map_err(|e| format!("not valid base64 ({e})"))?;
    <[u8; 32]>::try_from(raw.as_slice())
        .map_err(|_| format!("decodes to {} bytes, expected 32", raw.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors_round_trip() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in vectors {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn all_byte_values_round_trip() {
        let data: Vec<u8> = (0..=255).collect();
        for len in 0..data.len() {
            assert_eq!(decode(&encode(&data[..len])).unwrap(), &data[..len]);
        }
    }

    #[test]
    fn rejects_malformed_input() {
        assert_eq!(decode("Zg="), Err(Base64Error::Length(3)));
        assert_eq!(decode("Zg"), Err(Base64Error::Length(2)));
        assert_eq!(decode("Z!=="), Err(Base64Error::Byte(1)));
        assert_eq!(decode("Zg==Zg=="), Err(Base64Error::Padding));
        assert_eq!(decode("Z==="), Err(Base64Error::Padding));
        assert_eq!(decode("Zm9v="), Err(Base64Error::Length(5)));
        assert_eq!(decode("Zm-v"), Err(Base64Error::Byte(2))); // URL alphabet is not standard
    }

    #[test]
    fn accepts_what_go_accepts() {
        assert_eq!(decode("Zh==").unwrap(), b"f"); // unused trailing bits are ignored
        assert_eq!(decode("Zm9v\r\nYmFy\n").unwrap(), b"foobar");
    }

    #[test]
    fn key_must_be_32_bytes() {
        let key = [7u8; 32];
        assert_eq!(decode_key(&encode(&key)).unwrap(), key);
        let err = decode_key(&encode(&[1u8; 16])).unwrap_err();
        assert!(err.contains("16 bytes, expected 32"), "{err}");
        let err = decode_key("not base64!").unwrap_err();
        assert!(err.contains("not valid base64"), "{err}");
    }
}
