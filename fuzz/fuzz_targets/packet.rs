//! UDP side: raw bytes into open_packet, the same bytes as an authentic plaintext (so the
//! framing layers get exercised past AES-GCM), and decode_message with a round-trip check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wesher::membership::wire::{decode_message, encode_message, encrypt, open_packet, Keyring};

const KEY: [u8; 32] = [0x42; 32];

fuzz_target!(|data: &[u8]| {
    let ring = Keyring::new(KEY.into());
    let _ = open_packet(data, &ring);
    let _ = open_packet(&encrypt(&KEY.into(), [7; 12], data, b""), &ring);
    if let Ok(msg) = decode_message(data) {
        let again = decode_message(&encode_message(&msg));
        assert_eq!(again.as_ref(), Ok(&msg), "re-encoding changed the message");
    }
});
