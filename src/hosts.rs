//! The /etc/hosts lines wesher manages.
//!
//! Each peer gets `<ip>\t<name>\t# ! managed automatically by wesher interface <iface>`. A line is
//! ours when, trailing whitespace aside, it ends with that banner (Go's rule), so instances on
//! other interfaces never touch each other's lines. Every other line is kept byte for byte and in
//! order. Our lines go where the first of them was (else at the end), sorted by name then
//! address, so the output is stable and the file is only written when it changes.
//!
//! Lines of wesher v0.2 (`# ! MANAGED AUTOMATICALLY !`, no interface) are left alone, as Go v0.3
//! does: they may belong to a v0.2 instance still running, and since v0.2 derived the same
//! addresses they do not contradict ours. Remove them by hand after an upgrade.
//!
//! Names come from the network: only valid hostnames are written (letters, digits, `-`, `_`,
//! dot-separated labels of 1..63), and never one that would shadow a line we do not manage:
//! `localhost` (and `*.localhost`), or any name another line of the file already gives (the
//! other lines of wesher instances aside: the same member in two clusters is no takeover).

use crate::fsutil::{self, Attrs, FsError};
use std::fmt;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub const DEFAULT_PATH: &str = "/etc/hosts";

/// v0.2's banner, recognised only to document that we do not touch it.
pub const V02_BANNER: &str = "# ! MANAGED AUTOMATICALLY !";

/// The banner that marks our lines for `iface`.
pub fn banner(iface: &str) -> String {
    format!("# ! managed automatically by wesher interface {iface}")
}

/// One line to write: a peer's overlay address and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostEntry {
    pub name: String,
    pub ip: IpAddr,
}

/// Whether `name` can be written as a hosts name without changing the file's syntax.
pub fn is_writable_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
}

/// Whether `name` is a hostname (RFC 1123 labels, `_` tolerated as resolvers do), which is what
/// a member must be called to get a hosts line.
pub fn is_hostname(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Names that resolve through lines we do not manage, lowercased: `localhost` and the names of
/// every line that is neither ours nor another wesher instance's.
///
/// A vector searched in order: a hosts file has tens of names, and a set type would cost a
/// router binary more code than the searches cost time.
fn foreign_names(existing: &[u8]) -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    let any_banner = b"# ! managed automatically by wesher interface ";
    for line in existing.split(|&b| b == b'\n') {
        if line.windows(any_banner.len()).any(|w| w == any_banner)
            || line
                .windows(V02_BANNER.len())
                .any(|w| w == V02_BANNER.as_bytes())
        {
            continue;
        }
        let data = line.split(|&b| b == b'#').next().unwrap_or_default();
        let text = String::from_utf8_lossy(data);
        names.extend(
            text.split_ascii_whitespace()
                .skip(1)
                .map(str::to_ascii_lowercase),
        );
    }
    names
}

/// Whether a member called `name` may get a line next to `foreign` names.
fn may_write(name: &str, foreign: &[String]) -> bool {
    let lower = name.to_ascii_lowercase();
    is_hostname(name) && !lower.ends_with(".localhost") && !foreign.contains(&lower)
}

/// What `update` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub write: Write,
    /// Names that were not written: not hostnames, or shadowing a line we do not manage.
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The content was already right; the file was not touched.
    Unchanged,
    /// Replaced atomically (temp file + rename).
    Renamed,
    /// Rename was impossible (e.g. a bind-mounted file); rewritten in place.
    InPlace,
}

#[derive(Debug)]
pub enum HostsError {
    /// The file does not exist; we do not create it (a missing file means a wrong path).
    Missing(String),
    Fs(FsError),
    /// Both the atomic replacement and the in-place rewrite failed.
    BothFailed {
        rename: FsError,
        in_place: FsError,
    },
    /// Another agent holds the lock: try again shortly (the event loop does not wait).
    Busy(String),
}

impl fmt::Display for HostsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostsError::Missing(p) => write!(f, "hosts file {p} does not exist; not creating it"),
            HostsError::Fs(e) => write!(f, "hosts file: {e}"),
            HostsError::Busy(dir) => write!(f, "hosts file: {dir} is locked by another process"),
            HostsError::BothFailed { rename, in_place } => write!(
                f,
                "hosts file: {rename}; falling back to rewriting in place failed too: {in_place}"
            ),
        }
    }
}

impl std::error::Error for HostsError {}

fn is_ours(line: &[u8], banner: &[u8]) -> bool {
    line.trim_ascii_end().ends_with(banner)
}

/// The new content for `existing`: other lines verbatim, our lines replaced by `entries`.
/// Returns the content and the names refused.
pub fn render(existing: &[u8], iface: &str, entries: &[HostEntry]) -> (Vec<u8>, Vec<String>) {
    let banner = banner(iface);
    let mut ours: Vec<&HostEntry> = Vec::new();
    let mut skipped = Vec::new();
    let foreign = foreign_names(existing);
    for e in entries {
        if may_write(&e.name, &foreign) {
            ours.push(e);
        } else {
            skipped.push(e.name.clone());
        }
    }
    ours.sort();
    ours.dedup();

    let mut block = Vec::new();
    for e in ours {
        block.extend_from_slice(format!("{}\t{}\t{banner}\n", e.ip, e.name).as_bytes());
    }

    let mut out = Vec::with_capacity(existing.len() + block.len());
    let mut placed = false;
    let body = existing.strip_suffix(b"\n").unwrap_or(existing);
    if !existing.is_empty() {
        for line in body.split(|&b| b == b'\n') {
            if is_ours(line, banner.as_bytes()) {
                if !placed {
                    out.extend_from_slice(&block);
                    placed = true;
                }
            } else {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        }
    }
    if !placed && !block.is_empty() {
        out.extend_from_slice(&block);
    } else if !existing.is_empty() && !existing.ends_with(b"\n") {
        // Keep a missing final newline, so a file without our lines is left exactly as it was.
        out.pop();
    }
    (out, skipped)
}

/// Makes the file at `path` hold exactly `entries` as our lines for `iface`.
///
/// The directory of the file stays locked (flock) from the read to the write, so two agents on
/// one node (two clusters, two interfaces) do not drop each other's lines. The directory, not
/// the file: the file is replaced by a rename, and a lock on the old one would protect nothing.
/// The lock is only tried: when another agent holds it, `HostsError::Busy` says to try later.
pub fn update(path: &Path, iface: &str, entries: &[HostEntry]) -> Result<Outcome, HostsError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let lock = File::open(dir).map_err(|e| fs_error("opening", dir, e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(HostsError::Busy(dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(fs_error("locking", dir, e)),
    }
    let Some(existing) = fsutil::read_optional(path).map_err(HostsError::Fs)? else {
        if entries.is_empty() {
            // Nothing to remove from a file that is not there.
            return Ok(Outcome {
                write: Write::Unchanged,
                skipped: Vec::new(),
            });
        }
        return Err(HostsError::Missing(path.display().to_string()));
    };
    let (content, skipped) = render(&existing, iface, entries);
    let write = if content == existing {
        Write::Unchanged
    } else {
        replace(path, &content)?
    };
    drop(lock); // after the new content is in place
    Ok(Outcome { write, skipped })
}

fn fs_error(action: &'static str, path: &Path, source: io::Error) -> HostsError {
    HostsError::Fs(FsError {
        action,
        path: path.to_path_buf(),
        source,
    })
}

/// Removes our lines for `iface` (at exit, where waiting a little for the lock is fine).
pub fn cleanup(path: &Path, iface: &str) -> Result<Outcome, HostsError> {
    for _ in 0..50 {
        match update(path, iface, &[]) {
            Err(HostsError::Busy(_)) => std::thread::sleep(std::time::Duration::from_millis(20)),
            other => return other,
        }
    }
    update(path, iface, &[])
}

/// Atomic replacement keeping mode and owner; in-place rewrite when that is impossible.
fn replace(path: &Path, content: &[u8]) -> Result<Write, HostsError> {
    let meta = std::fs::metadata(path).map_err(|e| fs_error("reading metadata of", path, e))?;
    let attrs = Attrs {
        mode: meta.mode() & 0o7777,
        owner: Some((meta.uid(), meta.gid())),
    };
    match fsutil::write_atomic(path, content, attrs) {
        Ok(()) => Ok(Write::Renamed),
        Err(rename) => match fsutil::rewrite_in_place(path, content) {
            Ok(()) => {
                log::debug!("hosts file: {rename}; rewrote it in place instead");
                Ok(Write::InPlace)
            }
            Err(in_place) => Err(HostsError::BothFailed { rename, in_place }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::testutil::{is_root, skip_or_fail, TempDir};
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn entry(name: &str, ip: &str) -> HostEntry {
        HostEntry {
            name: name.into(),
            ip: ip.parse().unwrap(),
        }
    }

    const B: &str = "# ! managed automatically by wesher interface wgoverlay";

    #[test]
    fn renders_lines_in_gos_format() {
        let (out, skipped) = render(
            b"127.0.0.1\tlocalhost\n",
            "wgoverlay",
            &[
                entry("node2", "10.59.76.237"),
                entry("node1", "10.59.73.60"),
            ],
        );
        assert!(skipped.is_empty());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("127.0.0.1\tlocalhost\n10.59.73.60\tnode1\t{B}\n10.59.76.237\tnode2\t{B}\n")
        );
    }

    #[test]
    fn keeps_foreign_lines_verbatim_and_in_order() {
        let existing = format!(
            "# comment\n127.0.0.1 localhost\r\n\n10.0.0.9\told\t{B}\n::1  ip6-localhost  \n\
             10.0.0.8\tother\t# ! managed automatically by wesher interface wg1\n\
             10.1.1.1\tv2node\t{V02_BANNER}\n10.0.0.7\tstale\t{B}   \nno-newline-at-end"
        );
        let (out, _) = render(existing.as_bytes(), "wgoverlay", &[entry("n", "10.0.0.1")]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "# comment\n127.0.0.1 localhost\r\n\n10.0.0.1\tn\t{B}\n::1  ip6-localhost  \n\
                 10.0.0.8\tother\t# ! managed automatically by wesher interface wg1\n\
                 10.1.1.1\tv2node\t{V02_BANNER}\nno-newline-at-end"
            )
        );
    }

    #[test]
    fn missing_final_newline_is_kept_unless_we_append() {
        let (out, _) = render(b"127.0.0.1 localhost", "wg0", &[]);
        assert_eq!(out, b"127.0.0.1 localhost");
        let (out, _) = render(b"127.0.0.1 localhost", "wg0", &[entry("a", "10.0.0.1")]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("127.0.0.1 localhost\n10.0.0.1\ta\t{}\n", banner("wg0"))
        );
        // Our last line without a newline: removing it leaves the rest as it was.
        let existing = format!("x\n10.0.0.1\ta\t{}", banner("wg0"));
        let (out, _) = render(existing.as_bytes(), "wg0", &[]);
        assert_eq!(out, b"x");
    }

    #[test]
    fn banner_of_another_interface_is_not_ours() {
        let b1 = banner("wg1");
        assert!(!is_ours(
            format!("1.2.3.4\tx\t{}", banner("wg11")).as_bytes(),
            b1.as_bytes()
        ));
        assert!(!is_ours(
            format!("1.2.3.4\tx\t{}", banner("awg1")).as_bytes(),
            b1.as_bytes()
        ));
        assert!(is_ours(
            format!("1.2.3.4\tx\t{b1} \t").as_bytes(),
            b1.as_bytes()
        ));
    }

    #[test]
    fn only_hostnames_that_shadow_nothing_are_written() {
        let existing = "127.0.0.1\tlocalhost\n192.168.1.1 router Gateway.lan # the router\n\
             10.1.0.9\tnode3\t# ! managed automatically by wesher interface wg9\n";
        // Each name, and whether it gets a line.
        let names = [
            ("localhost", false),
            ("LOCALHOST", false),
            ("a.localhost", false),
            ("router", false),
            ("gateway.LAN", false),
            ("-dash", false),
            ("dot..dot", false),
            ("x_y", true),
            ("node3", true),
            ("node4.example", true),
        ];
        let entries: Vec<HostEntry> = names
            .iter()
            .enumerate()
            .map(|(i, (n, _))| entry(n, &format!("10.0.0.{i}")))
            .collect();
        let (out, skipped) = render(existing.as_bytes(), "wg0", &entries);
        let refused: Vec<&str> = names.iter().filter(|n| !n.1).map(|n| n.0).collect();
        assert_eq!(skipped, refused);
        let out = String::from_utf8(out).unwrap();
        let b0 = banner("wg0");
        assert_eq!(
            out,
            format!(
                "{existing}10.0.0.8\tnode3\t{b0}\n10.0.0.9\tnode4.example\t{b0}\n\
                 10.0.0.7\tx_y\t{b0}\n"
            )
        );
        assert!(!is_hostname(&"a".repeat(64)));
        assert!(is_hostname(&format!("{}.b", "a".repeat(63))));
    }

    #[test]
    fn refuses_names_that_break_the_syntax() {
        let (out, skipped) = render(
            b"",
            "wg0",
            &[
                entry("evil\n1.2.3.4 bank", "10.0.0.1"),
                entry("a b", "10.0.0.2"),
                entry("x#y", "10.0.0.3"),
                entry("", "10.0.0.4"),
                entry("ok.example", "10.0.0.5"),
            ],
        );
        assert_eq!(skipped.len(), 4);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("10.0.0.5\tok.example\t{}\n", banner("wg0"))
        );
    }

    #[test]
    fn ipv6_and_duplicates() {
        let e = entry("n6", "fd00::1");
        let (out, _) = render(b"", "wg0", &[e.clone(), e]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("fd00::1\tn6\t{}\n", banner("wg0"))
        );
    }

    #[test]
    fn update_writes_only_on_change_and_keeps_mode() {
        let dir = TempDir::new("hosts-update");
        let path = dir.path().join("hosts");
        fs::write(&path, "127.0.0.1\tlocalhost\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let entries = [entry("node1", "10.59.73.60")];

        let o = update(&path, "wgoverlay", &entries).unwrap();
        assert_eq!(o.write, Write::Renamed);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("127.0.0.1\tlocalhost\n10.59.73.60\tnode1\t{B}\n")
        );
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);

        let inode = fs::metadata(&path).unwrap().ino();
        let o = update(&path, "wgoverlay", &entries).unwrap();
        assert_eq!(o.write, Write::Unchanged);
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);

        let o = cleanup(&path, "wgoverlay").unwrap();
        assert_eq!(o.write, Write::Renamed);
        assert_eq!(fs::read_to_string(&path).unwrap(), "127.0.0.1\tlocalhost\n");
        assert_eq!(cleanup(&path, "wgoverlay").unwrap().write, Write::Unchanged);

        // A file we never wrote to is not touched by cleanup, even without a final newline.
        fs::write(&path, "127.0.0.1\tlocalhost").unwrap();
        assert_eq!(cleanup(&path, "wgoverlay").unwrap().write, Write::Unchanged);
        assert_eq!(fs::read_to_string(&path).unwrap(), "127.0.0.1\tlocalhost");
    }

    #[test]
    fn update_keeps_an_unusual_mode() {
        let dir = TempDir::new("hosts-mode");
        let path = dir.path().join("hosts");
        fs::write(&path, "").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o604)).unwrap();
        update(&path, "wg0", &[entry("a", "10.0.0.1")]).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o604);
    }

    #[test]
    fn missing_file_is_not_created() {
        let dir = TempDir::new("hosts-missing");
        let path = dir.path().join("hosts");
        let e = update(&path, "wg0", &[entry("a", "10.0.0.1")]).unwrap_err();
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert!(!path.exists());
        assert_eq!(cleanup(&path, "wg0").unwrap().write, Write::Unchanged);
    }

    /// Body of the bind-mount test, run by the parent inside a private mount namespace where the
    /// target is a bind mount (so rename onto it fails with EBUSY).
    #[test]
    #[ignore = "run by update_falls_back_when_the_file_is_a_bind_mount in a mount namespace"]
    fn child_update_on_bind_mount() {
        let path = std::env::var("WESHER_TEST_BIND_MOUNTED_HOSTS")
            .expect("run by update_falls_back_when_the_file_is_a_bind_mount");
        let o = update(Path::new(&path), "wg0", &[entry("peer", "10.0.0.9")]).unwrap();
        assert_eq!(o.write, Write::InPlace);
    }

    #[test]
    fn update_falls_back_when_the_file_is_a_bind_mount() {
        if std::env::var_os("WESHER_EMULATED").is_some() {
            // Under qemu-user the re-executed test binary is a foreign executable to the host's
            // unshare; the native run covers this.
            eprintln!("SKIPPED: the bind-mount test cannot re-execute itself under emulation");
            return;
        }
        let dir = TempDir::new("hosts-bind");
        if !is_root(dir.path()) {
            return skip_or_fail("bind-mount test needs root (mount namespace)");
        }
        let source = dir.path().join("real-hosts");
        let target = dir.path().join("hosts");
        fs::write(&source, "127.0.0.1 localhost\n").unwrap();
        fs::write(&target, "placeholder\n").unwrap();
        let exe = std::env::current_exe().unwrap();
        let output = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" "$2" && exec "$3" --exact hosts::tests::child_update_on_bind_mount --include-ignored --test-threads 1"#)
            .args(["sh".as_ref(), source.as_os_str(), target.as_os_str(), exe.as_os_str()])
            .env("WESHER_TEST_BIND_MOUNTED_HOSTS", &target)
            .output();
        match output {
            Err(e) => skip_or_fail(&format!("cannot run unshare: {e}")),
            Ok(out) => {
                // The child's output is kept out of ours (its summary line would confuse readers).
                assert!(
                    out.status.success(),
                    "child test failed: {}\n{}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                // The child wrote through the bind mount into the source file.
                assert_eq!(
                    fs::read_to_string(&source).unwrap(),
                    format!("127.0.0.1 localhost\n10.0.0.9\tpeer\t{}\n", banner("wg0"))
                );
                assert_eq!(fs::read_to_string(&target).unwrap(), "placeholder\n");
                // No temp file was left in the directory.
                assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
            }
        }
    }

    /// Two agents (two interfaces) updating one hosts file at once keep each other's lines, and
    /// a busy lock is reported, not waited for.
    #[test]
    fn concurrent_writers_keep_each_others_lines() {
        let dir = TempDir::new("hosts-concurrent");
        let path = dir.path().join("hosts");
        fs::write(&path, "127.0.0.1 localhost\n").unwrap();
        let writers: Vec<_> = ["wg1", "wg2", "wg3", "wg4"]
            .into_iter()
            .enumerate()
            .map(|(i, iface)| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for round in 0..50u8 {
                        let e = [entry(
                            &format!("peer{i}"),
                            &format!("10.{i}.0.{}", round % 250 + 1),
                        )];
                        // As the agent does: a busy lock is tried again a little later.
                        loop {
                            match update(&path, iface, &e) {
                                Err(HostsError::Busy(_)) => std::thread::yield_now(),
                                other => break drop(other.unwrap()),
                            };
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let text = fs::read_to_string(&path).unwrap();
        for i in 0..4 {
            assert!(
                text.contains(&format!("10.{i}.0.50\tpeer{i}\t")),
                "lost the last line of writer {i}:\n{text}"
            );
        }
        assert!(text.starts_with("127.0.0.1 localhost\n"));
        let held = File::open(dir.path()).unwrap();
        held.lock().unwrap();
        assert!(matches!(
            update(&path, "wg1", &[]),
            Err(HostsError::Busy(_))
        ));
        assert_eq!(text.lines().count(), 5, "{text}");
    }
}
