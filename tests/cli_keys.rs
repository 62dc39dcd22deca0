//! `wesher key ACTION` without KEY reads the key from standard input, so it never shows in
//! argv (`ps`); a bad key there is refused before the agent is asked.

use std::io::Write;
use std::process::{Command, Stdio};

const WESHER: &str = env!("CARGO_BIN_EXE_wesher");
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Runs `wesher key install --interface IFACE` with `stdin`; returns its stderr.
fn key_install(stdin: &str) -> String {
    // An interface no agent runs for: the request must fail at the socket, after the key.
    let iface = format!("nokey{}", std::process::id() % 10000);
    let mut child = Command::new(WESHER)
        .args(["key", "install", "--interface", &iface])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wesher");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn key_comes_from_standard_input_when_not_given() {
    let err = key_install(&format!("{KEY}\n"));
    assert!(err.contains("connecting to /var/run/wesher/nokey"), "{err}");
    assert!(!err.contains(KEY), "the key is never echoed: {err}");
    let err = key_install("c2hvcnQ=\n");
    assert!(err.contains("key from standard input"), "{err}");
    assert!(!err.contains("connecting"), "{err}");
}
