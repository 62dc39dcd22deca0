//! Durable file replacement shared by the state file and /etc/hosts.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A failed file operation: what we were doing, on which path, and the OS error.
#[derive(Debug)]
pub struct FsError {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for FsError {}

fn ctx<T>(r: io::Result<T>, action: &'static str, path: &Path) -> Result<T, FsError> {
    r.map_err(|source| FsError {
        action,
        path: path.to_path_buf(),
        source,
    })
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Who should own the replacement file and with which permission bits.
#[derive(Debug, Clone, Copy)]
pub struct Attrs {
    pub mode: u32,
    /// (uid, gid) to set when they differ from ours; None keeps the creator's.
    pub owner: Option<(u32, u32)>,
}

/// Replaces `path` with `content` atomically: a temp file in the same directory, written and
/// fsynced, renamed over `path`, then the directory fsynced. The temp file is removed on failure.
pub fn write_atomic(path: &Path, content: &[u8], attrs: Attrs) -> Result<(), FsError> {
    let dir = parent(path);
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let mut suffix = [0u8; 6];
    ctx(
        getrandom::fill(&mut suffix).map_err(|e| io::Error::other(e.to_string())),
        "generating a temp file name for",
        path,
    )?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{name}.{suffix}.tmp"));

    let result = (|| {
        let mut file = ctx(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(attrs.mode)
                .open(&tmp),
            "creating temp file",
            &tmp,
        )?;
        // The umask may have cleared bits of `mode`; set them exactly.
        ctx(
            file.set_permissions(fs::Permissions::from_mode(attrs.mode)),
            "setting permissions of",
            &tmp,
        )?;
        if let Some((uid, gid)) = attrs.owner {
            ctx(
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid)),
                "setting the owner of",
                &tmp,
            )?;
        }
        ctx(file.write_all(content), "writing", &tmp)?;
        ctx(file.sync_all(), "syncing", &tmp)?;
        ctx(fs::rename(&tmp, path), "renaming temp file over", path)
    })();
    if result.is_err() {
        // Best effort: the temp file may not exist, and the original error is what matters.
        let _ = fs::remove_file(&tmp);
        return result;
    }
    ctx(
        File::open(dir).and_then(|d| d.sync_all()),
        "syncing directory",
        dir,
    )
}

/// Rewrites `path` in place (same inode), for files that cannot be replaced by rename, such as a
/// bind-mounted /etc/hosts: new content is written from offset 0 before the file is cut to
/// length, so the file is never empty in between.
pub fn rewrite_in_place(path: &Path, content: &[u8]) -> Result<(), FsError> {
    let mut file = ctx(
        OpenOptions::new().write(true).open(path),
        "opening for rewrite",
        path,
    )?;
    ctx(file.write_all(content), "rewriting", path)?;
    ctx(file.set_len(content.len() as u64), "truncating", path)?;
    ctx(file.sync_all(), "syncing", path)
}

/// Reads a file; Ok(None) when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FsError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FsError {
            action: "reading",
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::{Path, PathBuf};

    /// A directory removed when dropped; unique per process and test.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(test: &str) -> TempDir {
            let mut r = [0u8; 4];
            getrandom::fill(&mut r).unwrap();
            let dir = std::env::temp_dir().join(format!(
                "wesher-test-{}-{test}-{}",
                std::process::id(),
                u32::from_le_bytes(r)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Whether this process can do root-only things (mount namespaces); checked via the owner
    /// of a file we create, so no libc call is needed.
    pub fn is_root(dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let probe = dir.join(".uid-probe");
        std::fs::write(&probe, b"").unwrap();
        let uid = std::fs::metadata(&probe).unwrap().uid();
        std::fs::remove_file(&probe).unwrap();
        uid == 0
    }

    /// Skips a test that needs something this machine lacks, but fails it under CI.
    pub fn skip_or_fail(reason: &str) {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("required in CI: {reason}");
        }
        eprintln!("SKIPPED: {reason}");
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::TempDir;
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn atomic_write_replaces_content_and_sets_mode() {
        let dir = TempDir::new("atomic");
        let path = dir.path().join("f");
        fs::write(&path, b"old").unwrap();
        let attrs = Attrs {
            mode: 0o640,
            owner: None,
        };
        write_atomic(&path, b"new content", attrs).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new content");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
    }

    #[test]
    fn atomic_write_failure_names_the_path_and_leaves_no_temp() {
        let dir = TempDir::new("atomic-fail");
        // Renaming a file over a non-empty directory fails, even for root.
        let target = dir.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"x").unwrap();
        let e = write_atomic(
            &target,
            b"x",
            Attrs {
                mode: 0o600,
                owner: None,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("renaming temp file over"), "{e}");
        assert!(e.to_string().contains(&target.display().to_string()), "{e}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn rewrite_in_place_keeps_the_inode() {
        let dir = TempDir::new("inplace");
        let path = dir.path().join("f");
        fs::write(&path, b"a much longer original content\n").unwrap();
        let inode = fs::metadata(&path).unwrap().ino();
        rewrite_in_place(&path, b"short\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"short\n");
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
        let e = rewrite_in_place(&dir.path().join("missing"), b"x").unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn read_optional_distinguishes_missing() {
        let dir = TempDir::new("readopt");
        assert!(read_optional(&dir.path().join("nope")).unwrap().is_none());
        fs::write(dir.path().join("yes"), b"1").unwrap();
        assert_eq!(
            read_optional(&dir.path().join("yes")).unwrap().unwrap(),
            b"1"
        );
        // A directory cannot be read as a file: an error, not "missing".
        assert!(read_optional(dir.path()).is_err());
    }
}
