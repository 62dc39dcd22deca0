//! Child processes (the `--on-change` program, `qrencode`) by posix_spawn(3), with standard
//! input from a file. std's `Command` costs 20 KiB of a router binary (an environment map,
//! pidfd support) for the two programs wesher ever starts.

use std::ffi::{CString, OsStr};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::ptr;

/// A started program, not reaped until `try_wait` or `wait` says it exited.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
}

/// How a child ended: the raw status of waitpid(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus(libc::c_int);

impl ExitStatus {
    pub fn success(self) -> bool {
        libc::WIFEXITED(self.0) && libc::WEXITSTATUS(self.0) == 0
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if libc::WIFEXITED(self.0) {
            write!(f, "exit status {}", libc::WEXITSTATUS(self.0))
        } else {
            write!(f, "killed by signal {}", libc::WTERMSIG(self.0))
        }
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argument"))
}

/// Fails with the error number posix_spawn's functions return (they leave errno alone).
fn check(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Starts `program` (looked up in PATH when it has no slash) with `args`, `stdin` as its
/// standard input, and this process's environment without its `WESHER_*` variables (our
/// settings, the cluster key among them, are no child's business) plus `env`. With
/// `own_group`, the child leads a new process group, so that `kill_group` reaches whatever it
/// starts.
pub fn spawn(
    program: &OsStr,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &File,
    own_group: bool,
) -> io::Result<Child> {
    let program = cstring(program.as_bytes())?;
    let mut argv = vec![program.clone()];
    for a in args {
        argv.push(cstring(a.as_bytes())?);
    }
    let envp = environment(std::env::vars_os(), env)?;
    let argv_ptrs = nul_terminated(&argv);
    let envp_ptrs = nul_terminated(&envp);

    // SAFETY: the attribute and file-action objects are initialised before use and destroyed
    // on every path; every pointer handed to posix_spawnp lives until it returns.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&mut actions))?;
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        if let Err(e) = check(libc::posix_spawnattr_init(&mut attr)) {
            libc::posix_spawn_file_actions_destroy(&mut actions);
            return Err(e);
        }
        let mut pid = 0;
        let result = check(libc::posix_spawn_file_actions_adddup2(
            &mut actions,
            stdin.as_raw_fd(),
            0,
        ))
        .and_then(|()| {
            // The child's signal dispositions and mask are the defaults, not the loop's.
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            check(libc::posix_spawnattr_setsigdefault(&mut attr, &all))?;
            check(libc::posix_spawnattr_setsigmask(&mut attr, &none))?;
            let mut flags = libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK;
            if own_group {
                check(libc::posix_spawnattr_setpgroup(&mut attr, 0))?;
                flags |= libc::POSIX_SPAWN_SETPGROUP;
            }
            check(libc::posix_spawnattr_setflags(
                &mut attr,
                flags as libc::c_short,
            ))?;
            check(libc::posix_spawnp(
                &mut pid,
                program.as_ptr(),
                &actions,
                &attr,
                argv_ptrs.as_ptr(),
                envp_ptrs.as_ptr(),
            ))
        });
        libc::posix_spawnattr_destroy(&mut attr);
        libc::posix_spawn_file_actions_destroy(&mut actions);
        result.map(|()| Child { pid })
    }
}

/// `inherited` without its `WESHER_*` variables, then `extra`, as `NAME=VALUE` strings.
fn environment(
    inherited: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    extra: &[(&str, &str)],
) -> io::Result<Vec<CString>> {
    let mut envp = Vec::new();
    for (name, value) in inherited {
        if !name.as_bytes().starts_with(b"WESHER_") {
            envp.push(cstring(
                &[name.as_bytes(), b"=", value.as_bytes()].concat(),
            )?);
        }
    }
    for (name, value) in extra {
        envp.push(cstring(format!("{name}={value}").as_bytes())?);
    }
    Ok(envp)
}

/// An anonymous in-memory file holding `bytes`, positioned at its start: a child's standard
/// input that never blocks the loop as a pipe could.
pub fn memfile(bytes: &[u8]) -> io::Result<File> {
    use std::io::{Seek, Write};
    use std::os::fd::FromRawFd;
    // SAFETY: a static C string; the returned descriptor is checked and then owned by File.
    let fd = unsafe { libc::memfd_create(c"wesher-stdin".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(file)
}

fn nul_terminated(strings: &[CString]) -> Vec<*mut libc::c_char> {
    let mut ptrs: Vec<*mut libc::c_char> = strings.iter().map(|s| s.as_ptr().cast_mut()).collect();
    ptrs.push(ptr::null_mut());
    ptrs
}

impl Child {
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Its exit status once it has exited (and is then reaped), without blocking.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.waitpid(libc::WNOHANG)
    }

    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.waitpid(0)? {
                return Ok(status);
            }
        }
    }

    fn waitpid(&mut self, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child, with a valid pointer for its status.
            match unsafe { libc::waitpid(self.pid, &mut status, flags) } {
                0 => return Ok(None),
                -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                -1 => return Err(io::Error::last_os_error()),
                _ => return Ok(Some(ExitStatus(status))),
            }
        }
    }

    /// SIGKILL to the process group the child leads (`own_group`).
    pub fn kill_group(&self) {
        // SAFETY: kill(2) on a process group we created.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("wesher-spawn-{}-{name}", std::process::id()))
    }

    #[test]
    fn our_variables_stay_home_and_the_extra_ones_go() {
        let inherited = [
            ("PATH", "/bin"),
            ("WESHER_CLUSTER_KEY", "secret"),
            ("HOME", "/"),
        ]
        .map(|(n, v)| (n.into(), v.into()));
        let env = environment(inherited.into_iter(), &[("WESHER_EVENT", "join")]).unwrap();
        let env: Vec<&str> = env.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(env, ["PATH=/bin", "HOME=/", "WESHER_EVENT=join"]);
    }

    #[test]
    fn the_child_reads_its_stdin_and_sees_its_arguments_and_variables() {
        let output = scratch("out");
        let stdin = memfile(b"hello\n").unwrap();
        let script = "read line; echo \"$line $WESHER_EVENT $2\" >\"$1\"";
        let out = output.to_str().unwrap();
        let mut child = spawn(
            OsStr::new("sh"),
            &["-c", script, "sh", out, "arg2"],
            &[("WESHER_EVENT", "join")],
            &stdin,
            true,
        )
        .unwrap();
        let status = child.wait().unwrap();
        let got = std::fs::read_to_string(&output).unwrap();
        let _ = std::fs::remove_file(&output);
        assert!(status.success(), "{status}");
        assert_eq!(got, "hello join arg2\n");
    }

    #[test]
    fn exit_codes_signals_and_missing_programs_are_reported() {
        let stdin = memfile(b"").unwrap();
        let mut c = spawn(OsStr::new("sh"), &["-c", "exit 3"], &[], &stdin, false).unwrap();
        let s = c.wait().unwrap();
        assert!(!s.success());
        assert_eq!(s.to_string(), "exit status 3");

        let mut c = spawn(OsStr::new("sleep"), &["30"], &[], &stdin, true).unwrap();
        assert_eq!(c.try_wait().unwrap(), None);
        c.kill_group();
        assert_eq!(c.wait().unwrap().to_string(), "killed by signal 9");

        let e = spawn(OsStr::new("/nonexistent/prog"), &[], &[], &stdin, false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
