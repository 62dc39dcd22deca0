//! The control socket: any request line the agent reads, and any status reply the client
//! reads (then renders as a table): an answer or an error, never a panic; the table never
//! carries a control character but its line ends, and a status read is written back as the
//! same status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wesher::control::{Request, Status};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Request::parse(&text);
    if let Some(status) = Status::from_json(&text) {
        assert_eq!(Status::from_json(&status.to_json()).as_ref(), Some(&status));
        let table = status.render();
        assert!(
            table.chars().all(|c| c == '\n' || !c.is_control()),
            "{table:?}"
        );
        assert_eq!(table.lines().count(), 2 + status.members.len());
    }
});
