//! The Go memberlist peer (tests/interop/gopeer), built once per test binary from Debian's
//! packages by tests/interop/build-gopeer.sh, with each Go toolchain (common::go): what Go sends
//! (its gob metadata above all) may differ between Go releases.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// (Go version, gopeer binary) for each toolchain; empty (after saying why) when the peer cannot
/// be built; fails under CI=true.
pub fn builds() -> &'static [(String, PathBuf)] {
    static BUILT: OnceLock<Result<Vec<(String, PathBuf)>, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/build-gopeer.sh");
        let mut peers = Vec::new();
        for go in super::go::toolchains() {
            let output = Command::new(&script)
                .arg(&go.goroot)
                .stderr(Stdio::inherit())
                .output()
                .map_err(|err| format!("running {}: {err}", script.display()))?;
            if !output.status.success() {
                return Err(format!(
                    "{} {} failed ({}); see its message above",
                    script.display(),
                    go.goroot.display(),
                    output.status
                ));
            }
            let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
            peers.push((go.version.clone(), PathBuf::from(path)));
        }
        if peers.is_empty() {
            return Err("no Go toolchain".into());
        }
        Ok(peers)
    });
    match built {
        Ok(peers) => peers,
        Err(reason) => {
            super::go::missing(&format!("the Go memberlist peer: {reason}"));
            &[]
        }
    }
}

/// The peer built with Debian's Go (the first toolchain), for tests that run one build.
pub fn build() -> Option<PathBuf> {
    builds().first().map(|(_, bin)| bin.clone())
}
