//! The state file: whatever bytes are on disk (a truncated write, a hand edit, an older
//! wesher's shape) give a state or an error, never a panic or a huge allocation; a state that
//! parsed is written back to what parses to the same state.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wesher::state::{parse, render};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.json");
    if let Ok((state, _warnings)) = parse(data, path) {
        let again = parse(render(&state).as_bytes(), path).map(|(s, _)| s);
        assert_eq!(again.ok().as_ref(), Some(&state), "render does not round-trip");
    }
});
