//! TCP side: raw bytes into open_stream, and the same bytes as the authentic plaintext of a
//! stream frame, whole and cut short (a cut frame must ask for more bytes, never error).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wesher::membership::wire::{encrypt, open_stream, Keyring};

const KEY: [u8; 32] = [0x42; 32];

fuzz_target!(|data: &[u8]| {
    let ring = Keyring::new(KEY.into());
    if let Ok(Some((_, used))) = open_stream(data, &ring) {
        assert!(used <= data.len());
    }
    let len = (data.len() + 29) as u32;
    let mut frame = vec![10];
    frame.extend_from_slice(&len.to_be_bytes());
    let sealed = encrypt(&KEY.into(), [7; 12], data, &frame);
    frame.extend_from_slice(&sealed);
    if let Ok(Some((_, used))) = open_stream(&frame, &ring) {
        assert_eq!(used, frame.len());
    }
    let cut = data.first().map_or(0, |&b| usize::from(b) % frame.len());
    assert_eq!(open_stream(&frame[..cut], &ring), Ok(None));
});
