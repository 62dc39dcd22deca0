//! memberlist's keyring and AES-256-GCM payload encryption.
//!
//! An encrypted payload is `vsn(1) | nonce(12) | ciphertext + tag(16)`. Version 1 is what every
//! node at protocol >= 2 sends; version 0 (PKCS#7-padded plaintext) is still accepted.

use std::fmt;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};

use super::rng::Rng;
use super::wire::WireError;

const VERSION_SIZE: usize = 1;
const NONCE_SIZE: usize = 12;
const TAG_SIZE: usize = 16;
const BLOCK_SIZE: usize = 16;

/// Bytes added by encryption (version 1): version byte, nonce, GCM tag.
pub const ENCRYPTION_OVERHEAD: usize = VERSION_SIZE + NONCE_SIZE + TAG_SIZE;

/// A 32-byte AES-256 key: not `Copy`, zeroed on drop.
pub type Key = crate::secret::SecretKey;

/// Why a keyring operation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyringError {
    /// A keyring needs at least one (primary) key.
    Empty,
    /// The key is not installed.
    NotInstalled,
    /// The primary key cannot be removed; `use_key` another one first.
    RemovePrimary,
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyringError::Empty => "a keyring needs at least one key",
            KeyringError::NotInstalled => "requested key is not in the keyring",
            KeyringError::RemovePrimary => "removing the primary key is not allowed",
        })
    }
}

impl std::error::Error for KeyringError {}

/// The installed cluster keys, primary first: the primary encrypts, every key may decrypt.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Drop for Keyring {
    // Each key zeroizes itself; this also clears the spare capacity, where `remove` leaves a
    // copy of the last key.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.keys);
    }
}

impl fmt::Debug for Keyring {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({} keys)", self.keys.len())
    }
}

impl Keyring {
    /// A keyring holding only `primary`.
    pub fn new(primary: Key) -> Self {
        Keyring {
            keys: vec![primary],
        }
    }

    /// The first key becomes primary; duplicates are dropped.
    pub fn from_keys(keys: Vec<Key>) -> Result<Self, KeyringError> {
        let mut iter = keys.into_iter();
        let mut ring = Keyring::new(iter.next().ok_or(KeyringError::Empty)?);
        for key in iter {
            ring.install(key);
        }
        Ok(ring)
    }

    /// The key that encrypts outgoing traffic.
    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// Every installed key, primary first (the order decryption tries them in).
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Adds a secondary key (no-op when already installed).
    pub fn install(&mut self, key: Key) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    /// Makes an installed key the primary one.
    pub fn use_key(&mut self, key: &Key) -> Result<(), KeyringError> {
        let pos = self
            .keys
            .iter()
            .position(|k| k == key)
            .ok_or(KeyringError::NotInstalled)?;
        let key = self.keys.remove(pos);
        self.keys.insert(0, key);
        Ok(())
    }

    /// Removes a secondary key; removing the primary is refused.
    pub fn remove(&mut self, key: &Key) -> Result<(), KeyringError> {
        if self.primary() == key {
            return Err(KeyringError::RemovePrimary);
        }
        let pos = self
            .keys
            .iter()
            .position(|k| k == key)
            .ok_or(KeyringError::NotInstalled)?;
        self.keys.remove(pos);
        Ok(())
    }
}

/// AES-GCM nonces: a 64-bit prefix drawn from a seeded splitmix64 generator plus a 32-bit
/// counter; the prefix is redrawn whenever the counter wraps, so a nonce never repeats within
/// one `Nonces` (seed it from the OS so restarts do not repeat either).
#[derive(Clone, Debug)]
pub struct Nonces {
    rng: Rng,
    prefix: [u8; 8],
    counter: u32,
}

impl Nonces {
    /// A nonce source seeded with `seed` (the driver passes OS randomness).
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        Nonces {
            prefix: rng.next_u64().to_be_bytes(),
            rng,
            counter: 0,
        }
    }

    /// The next unused nonce.
    pub fn next_nonce(&mut self) -> [u8; 12] {
        let mut nonce = [0; 12];
        nonce[..8].copy_from_slice(&self.prefix);
        nonce[8..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        if self.counter == 0 {
            self.prefix = self.rng.next_u64().to_be_bytes();
        }
        nonce
    }
}

/// Encrypts `plain` as a version-1 payload: `1 | nonce | ciphertext + tag`, authenticating `aad`.
pub fn encrypt(key: &Key, nonce: [u8; 12], plain: &[u8], aad: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.as_bytes().into());
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
        // aes-gcm only fails for plaintexts above 64 GiB; ours are bounded by the protocol.
        .expect("AES-GCM plaintext below 64 GiB");
    let mut out = Vec::with_capacity(ENCRYPTION_OVERHEAD + plain.len());
    out.push(1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Decrypts a payload with the first key that authenticates it (version 0 or 1).
pub fn decrypt(keyring: &Keyring, payload: &[u8], aad: &[u8]) -> Result<Vec<u8>, WireError> {
    let vsn = *payload.first().ok_or(WireError::Truncated)?;
    let min = match vsn {
        0 => ENCRYPTION_OVERHEAD + BLOCK_SIZE,
        1 => ENCRYPTION_OVERHEAD,
        v => return Err(WireError::EncryptionVersion(v)),
    };
    if payload.len() < min {
        return Err(WireError::Truncated);
    }
    let nonce = Nonce::from_slice(&payload[VERSION_SIZE..VERSION_SIZE + NONCE_SIZE]);
    let msg = &payload[VERSION_SIZE + NONCE_SIZE..];
    let mut plain = keyring
        .keys()
        .iter()
        .find_map(|key| {
            Aes256Gcm::new(key.as_bytes().into())
                .decrypt(nonce, Payload { msg, aad })
                .ok()
        })
        .ok_or(WireError::Decrypt)?;
    if vsn == 0 {
        let pad = usize::from(plain.last().copied().unwrap_or(0));
        if pad == 0 || pad > BLOCK_SIZE || pad > plain.len() {
            return Err(WireError::Padding);
        }
        plain.truncate(plain.len() - pad);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_rotation_follows_memberlist() {
        let (a, b, c) = (Key::from([1; 32]), Key::from([2; 32]), Key::from([3; 32]));
        let mut ring =
            Keyring::from_keys(vec![a.clone(), b.clone(), a.clone()]).expect("non-empty");
        assert_eq!(ring.keys(), [a.clone(), b.clone()]);
        ring.install(c.clone());
        ring.install(b.clone());
        assert_eq!(ring.keys(), [a.clone(), b.clone(), c.clone()]);
        assert_eq!(
            ring.use_key(&[9; 32].into()),
            Err(KeyringError::NotInstalled)
        );
        ring.use_key(&c).expect("installed");
        assert_eq!(ring.primary(), &c);
        assert_eq!(ring.keys(), [c.clone(), a.clone(), b.clone()]);
        assert_eq!(ring.remove(&c), Err(KeyringError::RemovePrimary));
        ring.remove(&a).expect("secondary");
        assert_eq!(ring.keys(), [c, b]);
        assert_eq!(ring.remove(&a), Err(KeyringError::NotInstalled));
        assert_eq!(Keyring::from_keys(vec![]), Err(KeyringError::Empty));
        assert_eq!(format!("{ring:?}"), "Keyring(2 keys)");
    }

    #[test]
    fn nonces_count_and_reseed_on_wrap() {
        let mut n = Nonces::new(42);
        let first = n.next_nonce();
        let second = n.next_nonce();
        assert_eq!(first[..8], second[..8]);
        assert_eq!(first[8..], [0, 0, 0, 0]);
        assert_eq!(second[8..], [0, 0, 0, 1]);
        n.counter = u32::MAX;
        let last = n.next_nonce();
        let wrapped = n.next_nonce();
        assert_eq!(last[..8], first[..8]);
        assert_ne!(wrapped[..8], first[..8]);
        assert_eq!(wrapped[8..], [0, 0, 0, 0]);
        assert_ne!(Nonces::new(1).next_nonce(), Nonces::new(2).next_nonce());
    }

    #[test]
    fn decrypt_tries_every_key_and_checks_aad() {
        let ring = Keyring::from_keys(vec![[7; 32].into(), [8; 32].into()]).expect("non-empty");
        let sealed = encrypt(&[8; 32].into(), [5; 12], b"hello", b"aad");
        assert_eq!(sealed.len(), 5 + ENCRYPTION_OVERHEAD);
        assert_eq!(
            decrypt(&ring, &sealed, b"aad").as_deref(),
            Ok(&b"hello"[..])
        );
        assert_eq!(decrypt(&ring, &sealed, b"other"), Err(WireError::Decrypt));
        assert_eq!(
            decrypt(&Keyring::new([7; 32].into()), &sealed, b"aad"),
            Err(WireError::Decrypt)
        );
    }

    #[test]
    fn version_zero_padding_is_removed() {
        // Version 0 encrypts the PKCS#7-padded plaintext; build one by hand.
        let key = Key::from([4; 32]);
        let mut padded = b"ping".to_vec();
        padded.extend_from_slice(&[12; 12]);
        let mut sealed = encrypt(&key, [1; 12], &padded, b"");
        sealed[0] = 0;
        assert_eq!(
            decrypt(&Keyring::new(key.clone()), &sealed, b"").as_deref(),
            Ok(&b"ping"[..])
        );
        let mut bad = b"ping".to_vec();
        bad.extend_from_slice(&[0; 12]);
        let mut sealed = encrypt(&key, [1; 12], &bad, b"");
        sealed[0] = 0;
        assert_eq!(
            decrypt(&Keyring::new(key), &sealed, b""),
            Err(WireError::Padding)
        );
    }

    #[test]
    fn unknown_version_and_short_payloads_are_rejected() {
        let ring = Keyring::new([1; 32].into());
        let mut sealed = encrypt(ring.primary(), [0; 12], b"x", b"");
        sealed[0] = 2;
        assert_eq!(
            decrypt(&ring, &sealed, b""),
            Err(WireError::EncryptionVersion(2))
        );
        assert_eq!(decrypt(&ring, &[1; 28], b""), Err(WireError::Truncated));
        assert_eq!(decrypt(&ring, &[], b""), Err(WireError::Truncated));
    }
}
