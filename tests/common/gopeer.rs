//! The Go memberlist peer (tests/interop/gopeer), built once per test binary from Debian's
//! packages by tests/interop/build-gopeer.sh.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The gopeer binary, or None (after saying why) when it cannot be built; fails under CI=true.
pub fn build() -> Option<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/build-gopeer.sh");
        let output = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|err| format!("running {}: {err}", script.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{} failed ({}); see its message above",
                script.display(),
                output.status
            ));
        }
        let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
        Ok(PathBuf::from(path))
    });
    match built {
        Ok(path) => Some(path.clone()),
        Err(reason) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the Go memberlist peer is required under CI: {reason}"
            );
            // Straight to stderr: libtest captures eprintln! of passing tests, and a skip
            // must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "skipping: no Go memberlist peer: {reason}"
            );
            None
        }
    }
}
