//! The Go toolchains that the tests build their Go programs with (tests/go-toolchains.sh):
//! Debian's golang-go (1.19) and a newer Go from bookworm-backports, since what Go sends can
//! change between releases (encoding/gob's type ids did), and one build must not hide that.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub struct Go {
    pub goroot: PathBuf,
    /// As `go env GOVERSION` prints it, e.g. "go1.19.8".
    pub version: String,
}

/// Every toolchain there is. Prints why one is missing; under CI=true both must be there.
pub fn toolchains() -> &'static [Go] {
    static FOUND: OnceLock<Vec<Go>> = OnceLock::new();
    FOUND.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go-toolchains.sh");
        let (found, failure) = match Command::new(&script).stderr(Stdio::inherit()).output() {
            Ok(out) => {
                let found: Vec<Go> = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|goroot| {
                        let goroot = PathBuf::from(goroot);
                        let version = Command::new(goroot.join("bin/go"))
                            .args(["env", "GOVERSION"])
                            .output()
                            .ok()
                            .filter(|o| o.status.success())?;
                        let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
                        Some(Go { goroot, version })
                    })
                    .collect();
                let failure = if !out.status.success() {
                    Some(format!("{} failed", script.display()))
                } else if found.len() < 2 {
                    Some("fewer than two Go toolchains".to_string())
                } else {
                    None
                };
                (found, failure)
            }
            Err(e) => (
                Vec::new(),
                Some(format!("running {}: {e}", script.display())),
            ),
        };
        if let Some(reason) = failure {
            let found: Vec<&str> = found.iter().map(|g| g.version.as_str()).collect();
            missing(&format!(
                "both Go toolchains: {reason}; testing with {found:?} only"
            ));
        }
        found
    })
}

/// A prerequisite is missing: a failure under CI=true, else a note on stderr (straight there:
/// libtest captures eprintln! of passing tests, and a skip must be seen).
pub fn missing(what: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "required under CI: {what}"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED, missing {what}");
}

impl Go {
    /// Builds the Go program in `dir` (standard library only, GOPATH mode, no network) into
    /// target/<name>-<version>-<hash of main.go>, unless that is there already.
    pub fn build(&self, dir: &Path, name: &str) -> Result<PathBuf, String> {
        let main = dir.join("main.go");
        let src = std::fs::read(&main).map_err(|e| format!("{}: {e}", main.display()))?;
        let mut hash = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&src, &mut hash);
        let target = target_dir();
        let out = target.join(format!(
            "{name}-{}-{:016x}",
            self.version,
            std::hash::Hasher::finish(&hash)
        ));
        if out.exists() {
            return Ok(out);
        }
        let status = Command::new(self.goroot.join("bin/go"))
            .args(["build", "-o"])
            .arg(PathBuf::from(format!("{}.tmp", out.display())))
            .arg(".")
            .current_dir(dir)
            .env("GOROOT", &self.goroot)
            .env("GO111MODULE", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("GOCACHE", target.join(format!("gocache-{}", self.version)))
            .status()
            .map_err(|e| format!("running go build in {}: {e}", dir.display()))?;
        if !status.success() {
            return Err(format!(
                "go build in {} with {} failed",
                dir.display(),
                self.version
            ));
        }
        std::fs::rename(PathBuf::from(format!("{}.tmp", out.display())), &out)
            .map_err(|e| format!("{}: {e}", out.display()))?;
        Ok(out)
    }
}

/// Cargo's target directory (a relative CARGO_TARGET_DIR is relative to the crate).
pub fn target_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d))
}
