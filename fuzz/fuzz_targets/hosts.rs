//! The hosts file: any existing content and any member names. Lines we do not manage come out
//! byte for byte, every line we write is a valid hostname of ours, and rendering our own output
//! again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wesher::hosts::{banner, is_hostname, render, HostEntry};

fuzz_target!(|data: &[u8]| {
    // Up to the first NUL: member names (split on 0xff); after it: the existing file.
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (names, existing) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let entries: Vec<HostEntry> = names
        .split(|&b| b == 0xff)
        .enumerate()
        .map(|(i, n)| HostEntry {
            name: String::from_utf8_lossy(n).into_owned(),
            ip: std::net::IpAddr::from([10, 0, (i >> 8) as u8, i as u8]),
        })
        .collect();
    let (out, _skipped) = render(existing, "wg0", &entries);
    let ours = banner("wg0");
    let mut written = 0;
    for line in out.split(|&b| b == b'\n') {
        if line.trim_ascii_end().ends_with(ours.as_bytes()) {
            let text = String::from_utf8_lossy(line);
            let name = text.split('\t').nth(1).unwrap_or_default();
            assert!(is_hostname(name), "wrote {name:?}");
            written += 1;
        }
    }
    assert!(written <= entries.len());
    let (again, _) = render(&out, "wg0", &entries);
    assert_eq!(again, out, "rendering is not idempotent");
});
